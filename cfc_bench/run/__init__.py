"""Running experiments: the Hydra app, the training loop, run folders, provenance, sweep callbacks
and loggers.
"""
