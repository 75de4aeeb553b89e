"""Bit-stream XOR: the parity of 2–31 random bits, event-based (default) or dense.

Protocol (``../shared/paper/protocols.md``): train 100,000 samples from
``RandomState(1234984)``, test 10,000 from ``RandomState(48736)``; per sample one
``randint(2, 32)`` for the length, then one ``randint(0, 2)`` per bit (drawing the bits
of a sample in one call consumes the same stream). Event encoding emits an event where a
bit differs from the previous one (elapsed = bits since the last event) plus a trailing
event for a final run of repeats; dense encoding emits every bit with elapsed 1. Both pad
to 32 and divide elapsed by 32. No validation split, as in the reference; ``val_samples > 0``
draws one more split of that size from its own ``RandomState(VAL_SEED)`` (not the protocol:
for searches on validation, cfc_bench.tune).

``max_bits`` (default 31, the protocol's) draws lengths from 2 to ``max_bits`` and pads to
``max_bits + 1``: a shorter stream that trains in minutes (the demo), not the paper's task.
Elapsed time is divided by 32 whatever ``max_bits`` is.

The readout has two logits and a softmax cross-entropy (``readout=softmax``), like every
classification task here; the TensorFlow references (train_xor.py, xor_task.py) have one
logit and a binary cross-entropy (``readout=sigmoid``, accuracy at logit > 0). The
likelihood is the same, but two logits have twice the readout weights, so an optimizer that
normalises each weight's step (RMSprop, Adam) moves the logit difference up to twice as
fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

import numpy as np
import torch

from cfc_bench.metrics import ACCURACY, Metric
from cfc_bench.models.base import SequenceIO
from cfc_bench.ranges import ranged
from cfc_bench.tasks.base import DataConfig, SequenceData, Task, TaskConfig

PAD = 32
MAX_BITS = PAD - 1
TRAIN_SEED, TEST_SEED = 1234984, 48736
VAL_SEED = 75311  # not the reference's: it has no validation split


class Encoding(Enum):
    event = "event"
    dense = "dense"


class Readout(Enum):
    softmax = "softmax"  # two logits, softmax cross-entropy
    sigmoid = "sigmoid"  # one logit, binary cross-entropy (the TensorFlow references)


@dataclass
class XORConfig(TaskConfig):
    name: str = "xor"
    encoding: Encoding = Encoding.event
    max_bits: int = ranged(MAX_BITS, ge=2, le=MAX_BITS)  # below 31 a reduced task (the demo)
    readout: Readout = Readout.softmax
    train_samples: int = ranged(100_000, ge=1)
    test_samples: int = ranged(10_000, ge=1)
    val_samples: int = ranged(0, ge=0)  # 0 = no validation split, as the reference
    metric: ClassVar[Metric] = ACCURACY

    def has_validation(self) -> bool:
        return self.val_samples > 0

    def build(self, data: DataConfig) -> Task:
        encoding = Encoding(self.encoding)
        sizes = {"train": self.train_samples, "val": self.val_samples, "test": self.test_samples}
        seeds = {"train": TRAIN_SEED, "val": VAL_SEED, "test": TEST_SEED}
        splits = {
            name: make_split(size, seeds[name], encoding, self.max_bits)
            for name, size in sizes.items()
            if size
        }
        outputs = 1 if Readout(self.readout) is Readout.sigmoid else 2
        io = SequenceIO(1, outputs)
        task = Task("xor", io, per_step=False, metric=self.metric, splits=splits)
        task.limit_train(self.train_limit)
        return task


def draw_bits(n: int, seed: int, max_bits: int = MAX_BITS) -> tuple[np.ndarray, np.ndarray]:
    """Bits ``[n, max_bits]`` (zeros past each length) and lengths ``[n]``, in the reference
    RNG order."""
    rng = np.random.RandomState(seed)
    bits = np.zeros((n, max_bits), dtype=np.int64)
    lengths = np.empty(n, dtype=np.int64)
    for i in range(n):
        length = rng.randint(low=2, high=max_bits + 1)
        lengths[i] = length
        bits[i, :length] = rng.randint(low=0, high=2, size=length)
    return bits, lengths


def encode_events(bits: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Event encoding of every row at once: values, elapsed (in bits) and mask, ``[n, W+1]``
    for bits ``[n, W]``."""
    n, width = bits.shape
    pos = np.arange(width)
    valid = pos < lengths[:, None]
    changed = np.ones_like(valid)
    changed[:, 1:] = bits[:, 1:] != bits[:, :-1]
    changed &= valid
    # Slots of the emitted events: the change positions, in order, first in each row.
    order = np.argsort(~changed, axis=1, kind="stable")
    n_events = changed.sum(axis=1)
    slot_used = pos < n_events[:, None]
    where = np.where(slot_used, order, 0)
    previous = np.concatenate([np.full((n, 1), -1), where[:, :-1]], axis=1)
    values = np.zeros((n, width + 1))
    elapsed = np.zeros((n, width + 1))
    mask = np.zeros((n, width + 1), dtype=bool)
    values[:, :width] = np.where(slot_used, np.take_along_axis(bits, where, axis=1), 0)
    elapsed[:, :width] = np.where(slot_used, where - previous, 0)
    mask[:, :width] = slot_used
    # A final run of repeated bits ends with one more event carrying its length.
    rows = np.arange(n)
    last_change = where[rows, n_events - 1]
    trailing = lengths - 1 - last_change
    has_trailing = trailing > 0
    r, k = rows[has_trailing], n_events[has_trailing]
    values[r, k] = bits[r, lengths[has_trailing] - 1]
    elapsed[r, k] = trailing[has_trailing]
    mask[r, k] = True
    return values, elapsed, mask


def encode_dense(bits: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    n, width = bits.shape
    mask = np.zeros((n, width + 1), dtype=bool)
    mask[:, :width] = np.arange(width) < lengths[:, None]
    values = np.zeros((n, width + 1))
    values[:, :width] = bits
    return values, mask.astype(float), mask


def make_split(n: int, seed: int, encoding: Encoding, max_bits: int = MAX_BITS) -> SequenceData:
    bits, lengths = draw_bits(n, seed, max_bits)
    encode = encode_events if encoding is Encoding.event else encode_dense
    values, elapsed, mask = encode(bits, lengths)
    return SequenceData(
        x=torch.tensor(values, dtype=torch.float32).unsqueeze(-1),
        dt=torch.tensor(elapsed / PAD, dtype=torch.float32),
        mask=torch.tensor(mask),
        y=torch.tensor(bits.sum(axis=1) % 2),
    )
