"""Tasks, and the public API for tasks of other packages (see README, Plugins).

``TaskConfig`` (the dataclass a task's settings extend, with ``build(data)``), ``Task`` (the
splits, their ``SequenceIO``, targets per step or per sequence, and the metric),
``SequenceData`` (one split's ``x``, ``dt``, ``mask``, ``y``), ``DataConfig`` (where raw
files live) and the metric registry (``Metric``, ``register_metric``, the built-in
``ACCURACY``, ``AUC``, ``AUPRC``, ``MSE``; ``IGNORE`` marks unlabelled steps) are the stable
names; the modules behind them may move.
"""

from cfc_bench.metrics import ACCURACY, AUC, AUPRC, IGNORE, MSE, Metric
from cfc_bench.metrics import register as register_metric
from cfc_bench.models.base import SequenceIO
from cfc_bench.tasks.base import DataConfig, Protocol, SequenceData, Task, TaskConfig

__all__ = [
    "ACCURACY",
    "AUC",
    "AUPRC",
    "IGNORE",
    "MSE",
    "DataConfig",
    "Metric",
    "Protocol",
    "SequenceData",
    "SequenceIO",
    "Task",
    "TaskConfig",
    "register_metric",
]
