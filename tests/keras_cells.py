"""Helpers for the tests that write out a Keras reference cell in numpy: fixed weights in the
Keras layout (kernel [I, nH], recurrent kernel [H, nH], bias [nH], n gate blocks side by
side), the logistic function, and a check of Keras' initial draw."""

from __future__ import annotations

import math

import numpy as np
import torch


def keras_weights(blocks: int, n_in: int, hidden: int) -> tuple[np.ndarray, ...]:
    """Kernel, recurrent kernel and bias of a cell with ``blocks`` gate blocks, drawn from a
    fixed seed: large enough that every gate leaves its linear range."""
    rng = np.random.default_rng(3)
    return (
        rng.normal(0, 0.7, (n_in, blocks * hidden)),
        rng.normal(0, 0.7, (hidden, blocks * hidden)),
        rng.normal(0, 0.3, blocks * hidden),
    )


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-v))


def assert_keras_init(weight_ih: torch.Tensor, weight_hh: torch.Tensor) -> None:
    """Torch-layout ``[nH, I]`` input and ``[nH, H]`` recurrent weights drawn as Keras draws its
    kernels: glorot-uniform within sqrt(6 / (I + nH)), orthogonal (orthonormal columns)."""
    n_h, n_in = weight_ih.shape
    assert weight_ih.abs().max() <= math.sqrt(6 / (n_in + n_h))
    eye = torch.eye(weight_hh.shape[1], dtype=weight_hh.dtype)
    torch.testing.assert_close(weight_hh.T @ weight_hh, eye, atol=1e-6, rtol=0)
