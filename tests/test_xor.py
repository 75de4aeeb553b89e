"""Bit-stream XOR against the protocol's check figures and a literal reading of its rules."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from cfc_bench.metrics import ACCURACY, AUC, IGNORE
from cfc_bench.tasks.base import DataConfig, SequenceData, Task
from cfc_bench.tasks.xor import (
    PAD,
    TEST_SEED,
    Encoding,
    Readout,
    XORConfig,
    draw_bits,
    make_split,
)


def encode_one(bits: list[int]) -> tuple[list[int], list[int]]:
    """The protocol's event encoding, step by step as written in protocols.md."""
    values, elapsed, counter, previous = [], [], 0, None
    for bit in bits:
        counter += 1
        if previous is None or bit != previous:
            values.append(bit)
            elapsed.append(counter)
            counter = 0
            if len(values) >= PAD - 1:
                break
        previous = bit
    if counter > 0:
        values.append(bits[-1])
        elapsed.append(counter)
    return values, elapsed


def test_event_test_set_matches_protocol_figures() -> None:
    test = make_split(10_000, TEST_SEED, Encoding.event)
    assert test.x.shape == (10_000, 32, 1) and test.dt.shape == (10_000, 32)
    assert int(test.mask.sum()) == 93_144
    assert int(test.y.sum()) == 5_089


def test_bits_follow_scalar_rng_call_order() -> None:
    rng = np.random.RandomState(TEST_SEED)
    bits, lengths = draw_bits(200, TEST_SEED)
    for i in range(200):
        length = rng.randint(low=2, high=32)
        expected = [rng.randint(low=0, high=2) for _ in range(length)]
        assert lengths[i] == length and bits[i, :length].tolist() == expected


def test_vectorised_event_encoding_matches_literal_rules() -> None:
    bits, lengths = draw_bits(500, TEST_SEED)
    split = make_split(500, TEST_SEED, Encoding.event)
    for i in range(500):
        values, elapsed = encode_one(bits[i, : lengths[i]].tolist())
        n = len(values)
        assert split.mask[i].tolist() == [True] * n + [False] * (PAD - n)
        assert split.x[i, :n, 0].tolist() == values
        np.testing.assert_allclose(split.dt[i, :n].numpy() * PAD, elapsed)
        assert int(split.y[i]) == sum(bits[i, : lengths[i]]) % 2


def test_hand_made_sequences() -> None:
    assert encode_one([1, 1, 0, 0, 0]) == ([1, 0, 0], [1, 2, 2])
    assert encode_one([0, 1, 0]) == ([0, 1, 0], [1, 1, 1])


def test_dense_encoding_has_every_bit_with_unit_elapsed() -> None:
    bits, lengths = draw_bits(50, TEST_SEED)
    dense = make_split(50, TEST_SEED, Encoding.dense)
    assert dense.mask.sum(1).tolist() == lengths.tolist()
    torch.testing.assert_close(dense.dt * PAD, dense.mask.float())
    assert dense.x[:, :31, 0].long().tolist() == bits.tolist()


def test_full_generation_takes_seconds_and_train_limit_subsets() -> None:
    start = time.perf_counter()
    task = XORConfig(train_limit=1000).build(DataConfig())
    assert time.perf_counter() - start < 20  # 110,000 samples: vectorised, not minutes
    assert len(task.splits["train"]) == 1000 and len(task.splits["test"]) == 10_000
    assert "val" not in task.splits


@pytest.mark.parametrize("encoding", ["event", "dense"])
def test_labels_are_parity(encoding: str) -> None:
    bits, lengths = draw_bits(100, 7)
    split = make_split(100, 7, Encoding(encoding))
    assert split.y.tolist() == (bits.sum(1) % 2).tolist()


def test_one_logit_readout_is_the_two_logit_one_with_the_first_logit_at_zero() -> None:
    """readout=sigmoid: loss and scores equal the softmax readout's for logits (0, z), since
    softmax(0, z)[1] = sigmoid(z); class weights and unlabelled steps are treated alike."""
    g = torch.Generator().manual_seed(0)
    n, steps = 12, 5
    z = torch.randn(n, steps, 1, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (n, steps), generator=g)
    y[0, 3:] = IGNORE
    data = SequenceData(
        torch.zeros(n, steps, 1), torch.ones(n, steps), torch.ones(n, steps, dtype=torch.bool), y
    )
    two = torch.cat([torch.zeros_like(z), z], dim=-1)
    for metric in (ACCURACY, AUC):
        task = Task("t", None, per_step=True, metric=metric, splits={})
        for weights in (None, torch.tensor([1.0, 7.5], dtype=torch.float64)):
            torch.testing.assert_close(task.loss(z, data, weights), task.loss(two, data, weights))
        assert task.score(z, data) == pytest.approx(task.score(two, data), abs=1e-12)


def test_sigmoid_readout_has_one_output() -> None:
    for readout, outputs in ((Readout.softmax, 2), (Readout.sigmoid, 1)):
        cfg = XORConfig(train_samples=50, test_samples=20, readout=readout)
        assert cfg.build(DataConfig()).io.output_size == outputs


def test_metric_registry_scores_match_sklearn_and_declare_direction() -> None:
    """Each registered metric scores a split as its definition says (analytic cases)."""
    from cfc_bench.metrics import AUPRC, METRICS, MSE, lookup

    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])  # P(1) ordered 0.88, 0.27, 0.62, 0.05
    y = torch.tensor([1, 0, 0, 1])
    mask = torch.ones(4, 1, dtype=torch.bool)
    assert ACCURACY.score(logits, y, mask) == pytest.approx(0.5)
    # ranks: positives at 1st and 4th of 4 -> AUC = (2 + 0) / 4; AP = (1/1 + 2/4) / 2
    assert AUC.score(logits, y, mask) == pytest.approx(0.5)
    assert AUPRC.score(logits, y, mask) == pytest.approx(0.75)
    out, target = torch.zeros(2, 3, 1), torch.ones(2, 3, 1)
    steps = torch.tensor([[True, True, False], [True, False, False]])
    assert MSE.score(out, target, steps) == pytest.approx(1.0)
    assert MSE.better(0.5, 1.0) and not MSE.better(2.0, 1.0) and AUC.better(0.9, 0.8)
    assert lookup("auprc") is AUPRC and set(METRICS) >= {"accuracy", "auc", "auprc", "mse"}
    assert ACCURACY.header == "accuracy (%)" and AUC.header == "ROC AUC"
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        lookup("nope")
