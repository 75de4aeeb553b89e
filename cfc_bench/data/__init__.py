"""Datasets, by responsibility (tasks import this package; it never imports tasks):

- :mod:`~cfc_bench.data.config`: the data config and the folders it implies (root, mirror);
- :mod:`~cfc_bench.data.datasets`: the registry (official sources, digests, layouts);
- :mod:`~cfc_bench.data.download`: HTTP transfers, digests, safe archive extraction;
- :mod:`~cfc_bench.data.manifest`: what was installed where, and verifying it;
- :mod:`~cfc_bench.data.install`: fetching, checking and recording a dataset;
- :mod:`~cfc_bench.data.store`: the folder a task reads, and the identity of its files;
- :mod:`~cfc_bench.data.cache`: preprocessed tensors keyed by parameters and raw files;
- :mod:`~cfc_bench.data.info` and :mod:`~cfc_bench.data.cli`: the `cfc-bench data` command.
"""
