"""Liquid time-constant network (LTC), the paper's ODE baseline: ``ncps.torch.LTC`` and the
two cells of the CfC repository (``flavour``).

Each of the ``H`` neurons has a potential ``v_j``, driven by a leak, by chemical synapses from
the neurons ``i`` and by sensory synapses from the mapped inputs ``x'_k = x_k·a_k + b_k``:

  cm_j dv_j/dt = gleak_j (vleak_j − v_j) + Σ_i w_ij σ(sigma_ij (v_i − mu_ij)) (erev_ij − v_j)
                                         + Σ_k ŵ_kj σ(ŝigma_kj (x'_k − m̂u_kj)) (êrev_kj − v_j)

The input is held over each observation interval ``dt`` (per sample, ``[B,1]``) and the ODE
integrated by ``ode_unfolds`` fused semi-implicit Euler steps of size ``h = dt / ode_unfolds``:

  v ← (cm·v + h·(gleak·vleak + N(v) + N̂)) / (cm + h·(gleak + D(v) + D̂) + epsilon)

with ``N(v)_j = Σ_i w_ij σ(sigma_ij (v_i − mu_ij)) erev_ij``, ``D(v)_j`` the same sum without
``erev``, and ``N̂, D̂`` those sums over the sensory synapses. ncps divides numerator and
denominator by ``h`` (``cm/h`` in place of ``cm``) and adds ``epsilon`` after that division;
here both are multiplied by ``h`` and ``epsilon`` is added once, so ``dt = 0`` (padding,
simultaneous events) leaves ``v`` unchanged where ncps divides by zero. The two denominators
differ by ``epsilon·(1 − h)``, a relative 1e-8. The conductances ``gleak, cm, w, ŵ`` are the
softplus of unconstrained parameters (ncps' ``implicit_param_constraints=True``, its ``LTC``
default), so they stay positive under any optimizer step without weight clipping.

Flavours. ``ncps`` is described above. The CfC repository's cells (raminmh/CfC) step with
``h = (dt + offset) / ode_unfolds`` (``cm/h`` there), use the conductance parameters as they
are (no softplus) and clip them at zero after every optimizer step (:meth:`LTC.after_step`),
and draw polarities ±1 with P(+1) = 1/2:

  tensorflow         offset 1e-3; Keras' NonNeg constraint      (tf_cfc.py, XOR and Walker2d)
  pytorch_reference  offset 1;    ReLU after every step         (torch_cfc.py, PhysioNet)

The TensorFlow cell's default is 3 unfolds, the PyTorch cell's 6 and no output map
(``output_mapping=none``); the presets set both. With the offset of 1, the PhysioNet paper
protocol's negative elapsed times above −1 still give ``h > 0``. ``polarity_seed`` draws the
polarities from their own seeded generator as ncps' wiring does (numpy ``default_rng``, one
choice per synapse, recurrent then sensory; ncps' seed is 1111), not from the run's seed.

Output: ncps' motor neurons are all ``H`` units with fully connected wiring; their output map
``v_j·c_j + d_j`` is applied here too, and the base class's linear readout follows (ncps' cell
output followed by an ``nn.Linear``). Sparse wirings (NCP) are not implemented.

Speed: parameter transforms are computed once per forward, outside the time loop. The
sensory sums are computed once per observation (not per unfold) inside the step; all steps
at once would be a ``[B,T,I,H]`` tensor (268 MB at B=128, T=100, I=82, H=64), slower on CPU
than per step. With ``compile`` each observation step (sensory sums and all unfolds) runs
through ``torch.compile``, which fuses the ``[B,H,H]`` sigmoids, products and sums into a
few kernels and keeps only ``[B,H]`` tensors for the backward pass (the sigmoids are
recomputed there).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel
from cfc_bench.ranges import ranged


class Flavour(Enum):
    """Which LTC cell: ``ncps``, or the CfC repository's ``tensorflow`` / ``pytorch_reference``."""

    ncps = "ncps"
    tensorflow = "tensorflow"
    pytorch_reference = "pytorch_reference"


# Each flavour's (time offset added to dt, the polarities drawn from, softplus conductances)
FLAVOURS = {
    Flavour.ncps: (0.0, (-1, 1, 1), True),
    Flavour.tensorflow: (1e-3, (-1, 1), False),
    Flavour.pytorch_reference: (1.0, (-1, 1), False),
}
CONDUCTANCES = ("gleak", "cm", "w", "sensory_w")


class Mapping(Enum):
    """ncps' input/output maps: ``affine`` (``x·a + b``), ``linear`` (``x·a``) or ``none``."""

    affine = "affine"
    linear = "linear"
    none = "none"


@dataclass
class LTCConfig(ModelConfig):
    name: str = "ltc"
    hidden: int = ranged(64, ge=1)
    ode_unfolds: int = ranged(6, ge=1)
    epsilon: float = 1e-8
    input_mapping: Mapping = Mapping.affine
    output_mapping: Mapping = Mapping.affine
    compile: bool = True  # torch.compile the observation step (compiled on first use)
    flavour: Flavour = Flavour.ncps  # see the module docstring
    # Polarities from numpy's default_rng(polarity_seed) as ncps' wiring (ncps: 1111); None:
    # from the run's seed (torch's generator)
    polarity_seed: int | None = None

    def build(self, io: SequenceIO) -> LTC:
        return LTC(self, io)


class Synapses(NamedTuple):
    """One synapse population ``[source, target]``, parameters transformed for the step."""

    sigma: torch.Tensor
    sigma_mu: torch.Tensor  # sigma·mu, so that sigma·(v − mu) is one fused multiply-add
    w: torch.Tensor  # positive conductance
    w_erev: torch.Tensor


class Neurons(NamedTuple):
    cm: torch.Tensor
    gleak: torch.Tensor
    gleak_vleak: torch.Tensor
    recurrent: Synapses
    sensory: Synapses


def synapse_sums(v: torch.Tensor, syn: Synapses) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ_i w_ij σ(sigma_ij (v_i − mu_ij)) erev_ij, Σ_i w_ij σ(...))``: ``[B,I]`` → ``[B,J]``."""
    act = torch.sigmoid(torch.addcmul(-syn.sigma_mu, v.unsqueeze(-1), syn.sigma))
    return (act * syn.w_erev).sum(-2), (act * syn.w).sum(-2)


def ode_step(
    v: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, n: Neurons, unfolds: int, epsilon: float
) -> torch.Tensor:
    """The potentials ``v [B,H]`` after ``dt [B,1]`` under the mapped input ``x [B,I]``."""
    sensory_num, sensory_den = synapse_sums(x, n.sensory)
    h = dt / unfolds
    drive_num = h * (n.gleak_vleak + sensory_num)
    drive_den = n.cm + h * (n.gleak + sensory_den) + epsilon
    for _ in range(unfolds):
        num, den = synapse_sums(v, n.recurrent)
        v = (n.cm * v + drive_num + h * num) / (drive_den + h * den)
    return v


@functools.cache
def compiled_ode_step() -> Callable[..., torch.Tensor]:
    return torch.compile(ode_step)


def uniform(shape: tuple[int, ...], low: float, high: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape).uniform_(low, high))


def reversal_potentials(
    shape: tuple[int, int], choices: tuple[int, ...], rng: np.random.Generator | None
) -> nn.Parameter:
    """Random synapse polarities, each one of ``choices`` with equal odds (``(-1, 1, 1)``:
    P(+1) = 2/3): from torch's generator, or from ``rng`` one choice per synapse in row-major
    order, as ncps' wiring draws them."""
    if rng is None:
        p_minus = choices.count(-1) / len(choices)
        return nn.Parameter(torch.where(torch.rand(shape) < p_minus, -1.0, 1.0))
    rows, cols = shape
    return nn.Parameter(
        torch.tensor([[float(rng.choice(choices)) for _ in range(cols)] for _ in range(rows)])
    )


def affine_map(kind: Mapping, size: int) -> nn.ParameterDict:
    params = nn.ParameterDict()
    if kind is not Mapping.none:
        params["weight"] = nn.Parameter(torch.ones(size))
    if kind is Mapping.affine:
        params["bias"] = nn.Parameter(torch.zeros(size))
    return params


def apply_map(params: nn.ParameterDict, x: torch.Tensor) -> torch.Tensor:
    if "weight" in params:
        x = x * params["weight"]
    if "bias" in params:
        x = x + params["bias"]
    return x


class LTC(SequenceModel):
    def __init__(self, cfg: LTCConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        if cfg.ode_unfolds < 1:
            raise ValueError(f"ode_unfolds must be at least 1, got {cfg.ode_unfolds}")
        self.unfolds = cfg.ode_unfolds
        self.epsilon = cfg.epsilon
        self.compile = cfg.compile
        self.dt_offset, polarities, self.softplus = FLAVOURS[Flavour(cfg.flavour)]
        n_in, hidden = io.input_size, cfg.hidden
        # Names, shapes ([source, target]) and initial ranges of ncps.torch.LTCCell; gleak, cm,
        # w and sensory_w are raw values that a softplus turns into conductances.
        # (The CfC repository's cells share these names, shapes and ranges.)
        self.gleak = uniform((hidden,), 0.001, 1.0)
        self.vleak = uniform((hidden,), -0.2, 0.2)
        self.cm = uniform((hidden,), 0.4, 0.6)
        self.sigma = uniform((hidden, hidden), 3.0, 8.0)
        self.mu = uniform((hidden, hidden), 0.3, 0.8)
        self.w = uniform((hidden, hidden), 0.001, 1.0)
        seed = cfg.polarity_seed
        rng = None if seed is None else np.random.default_rng(seed)  # recurrent, then sensory
        self.erev = reversal_potentials((hidden, hidden), polarities, rng)
        self.sensory_sigma = uniform((n_in, hidden), 3.0, 8.0)
        self.sensory_mu = uniform((n_in, hidden), 0.3, 0.8)
        self.sensory_w = uniform((n_in, hidden), 0.001, 1.0)
        self.sensory_erev = reversal_potentials((n_in, hidden), polarities, rng)
        self.input_map = affine_map(Mapping(cfg.input_mapping), n_in)
        self.output_map = affine_map(Mapping(cfg.output_mapping), hidden)

    def after_step(self) -> None:
        """The CfC repository's flavours: conductances clipped at zero (Keras' NonNeg, the
        PyTorch cell's ReLU) after every optimizer step; ncps' softplus needs nothing."""
        if not self.softplus:
            with torch.no_grad():
                for name in CONDUCTANCES:
                    getattr(self, name).clamp_(min=0.0)

    def neurons(self) -> Neurons:
        """The state-free quantities the step reads, positive conductances included."""
        positive = F.softplus if self.softplus else (lambda p: p)
        gleak, cm = positive(self.gleak), positive(self.cm)
        w, sensory_w = positive(self.w), positive(self.sensory_w)
        return Neurons(
            cm=cm,
            gleak=gleak,
            gleak_vleak=gleak * self.vleak,
            recurrent=Synapses(self.sigma, self.sigma * self.mu, w, w * self.erev),
            sensory=Synapses(
                self.sensory_sigma,
                self.sensory_sigma * self.sensory_mu,
                sensory_w,
                sensory_w * self.sensory_erev,
            ),
        )

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The mapped potentials ``v·c + d`` after every step (ncps' cell outputs)."""
        neurons = self.neurons()
        xs = apply_map(self.input_map, x).unbind(1)
        dts = (dt.to(x.dtype).unsqueeze(-1) + self.dt_offset).unbind(1)
        step = compiled_ode_step() if self.compile else ode_step
        v = x.new_zeros(x.shape[0], self.readout.in_features)
        out = []
        for x_t, dt_t in zip(xs, dts, strict=True):
            v = step(v, x_t, dt_t, neurons, self.unfolds, self.epsilon)
            out.append(v)
        return apply_map(self.output_map, torch.stack(out, dim=1))
