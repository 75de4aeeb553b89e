"""Datasets: registry, download, store and manifest, preprocessing cache, information, and the
`cfc-bench data` command.
"""
