"""cfc-bench: reproduce and extend the benchmarks of closed-form continuous-time networks."""

__version__ = "0.1.0"
