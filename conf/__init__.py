"""Hydra configs, shipped inside the wheel as ``cfc_bench.conf``."""
