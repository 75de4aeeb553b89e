"""Presets of this package: cfc-bench reads them with hydra.searchpath=[pkg://cfc_example.conf]."""
