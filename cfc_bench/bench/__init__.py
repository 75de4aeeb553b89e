"""Speed measurement: the `cfc-bench bench` command, ncps adapters, timing, memory, the matmul
floor, CPU runtime settings and the machine-speed probe.
"""
