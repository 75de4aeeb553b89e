"""Benchmark tasks. Each module holds one task: its config schema, data protocol and metric."""
