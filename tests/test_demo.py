"""The demo (`make demo`): a reduced XOR that composes for each of its models, is not a paper
preset, and draws shorter streams of the same kind as the paper's task."""

from __future__ import annotations

import numpy as np
import pytest

from cfc_bench.config import compose
from cfc_bench.errors import ConfigError
from cfc_bench.tasks.base import DataConfig, Protocol
from cfc_bench.tasks.xor import MAX_BITS, TEST_SEED, Encoding, XORConfig, draw_bits, make_split


@pytest.mark.parametrize("model", ["cfc", "lstm"])
def test_demo_composes_as_a_reduced_xor_and_not_a_paper_preset(model: str) -> None:
    cfg = compose(["experiment=demo", f"model={model}"])
    assert cfg.model.name == model and cfg.task.name == "xor"
    assert not getattr(cfg, "paper_preset", False)
    assert Protocol(cfg.task.protocol) is Protocol.default
    assert 2 <= cfg.task.max_bits < MAX_BITS
    assert cfg.trainer.threads == 1 and cfg.device == "cpu"  # the same numbers on every CPU


def test_shorter_streams_keep_the_protocol_rng_order_and_parity() -> None:
    """max_bits=N: lengths 2..N drawn as randint(2, N + 1), one randint per bit, padded to N + 1."""
    rng = np.random.RandomState(TEST_SEED)
    bits, lengths = draw_bits(300, TEST_SEED, max_bits=10)
    for i in range(300):
        length = rng.randint(low=2, high=11)
        assert lengths[i] == length
        assert bits[i, :length].tolist() == rng.randint(low=0, high=2, size=length).tolist()
    assert set(lengths.tolist()) == set(range(2, 11))  # every length occurs in 300 draws
    for encoding in Encoding:
        split = make_split(300, TEST_SEED, encoding, max_bits=10)
        assert split.x.shape == (300, 11, 1)
        assert split.y.tolist() == (bits.sum(1) % 2).tolist()
        assert (split.mask.sum(1).numpy() <= lengths).all() and not split.mask[:, -1].any()


def test_default_stream_is_the_papers() -> None:
    assert XORConfig().max_bits == MAX_BITS
    for max_bits, steps in ((MAX_BITS, 32), (10, 11)):
        cfg = XORConfig(max_bits=max_bits, train_samples=5, test_samples=5)
        assert cfg.build(DataConfig()).splits["test"].x.shape[1] == steps


@pytest.mark.parametrize("max_bits", [1, 32, 0])
def test_bad_max_bits_is_a_config_error_before_data(max_bits: int) -> None:
    message = f"task.max_bits={max_bits} is out of range: task.max_bits must be in \\[2, 31\\]"
    with pytest.raises(ConfigError, match=message):
        compose(["task=xor", f"task.max_bits={max_bits}", "task.train_samples=1000000000"])
