"""An example cfc-bench plugin: a model and a task declared through entry points."""
