"""Speed measurement: the `cfc-bench bench` command (cli), its settings (settings/*.yaml), the
ncps adapters (ncps), timed steps (measure), memory (memory), rows and tables (output), the
matmul floor, CPU runtime settings and the machine-speed probe.
"""


class BenchError(ValueError):
    """A bad argument: the message says what is wrong and how to fix it."""
