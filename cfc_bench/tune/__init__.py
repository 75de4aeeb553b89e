"""Hyperparameter searches on validation data: Hydra's Optuna sweeper and `cfc-bench tune`."""
