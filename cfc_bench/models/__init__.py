"""Sequence models, and the public API for models of other packages (see README, Plugins).

``ModelConfig`` (the dataclass a model's settings extend, with ``build(io)``),
``SequenceModel`` (the module every model is: ``states`` over time and a linear readout) and
``SequenceIO`` (what a task tells a model about its data) are the stable names; the modules
behind them may move.
"""

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel

__all__ = ["ModelConfig", "SequenceIO", "SequenceModel"]
