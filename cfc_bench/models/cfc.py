"""Closed-form continuous-time networks (CfC): gated, no-gate, pure (Cf-S), mixed memory.

One step reads the input ``x_t``, the elapsed time ``dt`` (``[B,1]``) and the previous state
``h``. A backbone (``backbone_layers`` linear layers, each followed by the activation and,
from the second layer on, or from the first with ``dropout_first_layer``, by dropout; with no
layers the identity) gives ``z = backbone([x_t ; h])``, and four linear heads read it,
``f1, f2, ta, tb = W z + b``. With ``φ(u) = tanh(u)``, or LeCun's ``1.7159·tanh(0.666·u)`` when
``head_activation=lecun_tanh`` (the TensorFlow cell):

  default (gated)  s = σ(ta·dt + tb),   h' = φ(f1)·(1 − s) + s·φ(f2)
  no_gate          s = σ(ta·dt + tb),   h' = φ(f1) + s·φ(f2)
  pure (Cf-S)      one head f,          h' = −A·exp(−dt·(|w_tau| + |f|))·f + A

with learned vectors ``A, w_tau`` for Cf-S. With ``mixed_memory`` (CfC-mmRNN) an LSTM cell
(:class:`MixedMemoryLSTM`) reads ``x_t`` and, as its recurrent input, the CfC's previous state
``h``, and gives ``u_t`` (its cell state ``c`` carried beside ``h``). ``coupling`` says where
``u_t`` enters the CfC step:

  pytorch     backbone([x_t ; u_t])      the PyTorch reference and ncps (torch_cfc.py)
  tensorflow  backbone([u_t ; h])        the TensorFlow ``MixedCfcCell`` (tf_cfc.py): the
                                         LSTM's output is the CfC's input; LSTM biases start
                                         at zero (pytorch: uniform in ±0.1)

The state starts at zero.

:meth:`CfC.reference_step` writes these equations in plain autograd. Training and inference
run the fused loop of :mod:`cfc_bench.models.cfc_loop` instead (hand-written backward pass,
TorchScript with ``script``), which tests/test_cfc_loop.py holds to the reference step and
tests/test_parity_ncps.py to ``ncps.torch.CfC`` given the same weights, except that here
``dt`` is always ``[B,1]`` per sample, so a batch whose size equals the hidden size never
broadcasts time across units. The tensorflow coupling runs the reference step (autograd),
which tests/test_cfc_mixed.py holds to ``MixedCfcCell``'s equations.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel, last_steps
from cfc_bench.models.cfc_loop import LOOP_ACTIVATIONS, LoopSpec, Recurrence
from cfc_bench.models.layers import LECUN_SCALE, LECUN_SLOPE, Activation, activation
from cfc_bench.ranges import ranged


class CfCMode(Enum):
    default = "default"
    no_gate = "no_gate"
    pure = "pure"


class HeadActivation(Enum):
    """What ``f1, f2`` pass through: ``tanh`` (the PyTorch reference, ncps) or LeCun's tanh
    ``1.7159·tanh(0.666·x)`` (the TensorFlow reference's heads)."""

    tanh = "tanh"
    lecun_tanh = "lecun_tanh"


# (scale, slope) of each head activation ``scale·tanh(slope·x)``
HEAD_SHAPES = {
    HeadActivation.tanh: (1.0, 1.0),
    HeadActivation.lecun_tanh: (LECUN_SCALE, LECUN_SLOPE),
}


class Coupling(Enum):
    """Where the mixed-memory LSTM's output enters the CfC step (module docstring)."""

    pytorch = "pytorch"
    tensorflow = "tensorflow"


class PureInit(Enum):
    """Initial ``A`` and ``w_tau`` of Cf-S. ``xavier``: the cell's xavier draw, as the PyTorch
    reference gives every ``[1,H]`` parameter (PhysioNet, person activity scripts);
    ``constant``: ``A = 1, w_tau = 0``, as the TensorFlow reference (XOR, Walker2d, ET-sMNIST
    scripts)."""

    xavier = "xavier"
    constant = "constant"


@dataclass
class CfCConfig(ModelConfig):
    name: str = "cfc"
    mode: CfCMode = CfCMode.default
    hidden: int = ranged(64, ge=1)
    backbone_units: int = ranged(128, ge=1)
    backbone_layers: int = ranged(1, ge=0)
    backbone_activation: Activation = Activation.lecun_tanh
    backbone_dropout: float = ranged(0.0, ge=0, lt=1)
    # Dropout after the first layer too, as the TensorFlow reference (XOR, Walker, ET-sMNIST
    # runs); the PyTorch reference and ncps apply it from the second layer on (False).
    dropout_first_layer: bool = False
    head_activation: HeadActivation = HeadActivation.tanh  # gated and no-gate modes
    mixed_memory: bool = False
    forget_bias: float = 1.0  # added to the LSTM forget gate of the mixed-memory cell
    coupling: Coupling = Coupling.pytorch  # mixed memory only: see the module docstring
    init_gain: float | None = 1.0  # xavier-uniform gain of the cell's matrices; None: torch's
    pure_init: PureInit = PureInit.xavier  # Cf-S only
    script: bool = True  # run the time loop under TorchScript; False: the same code in Python

    def build(self, io: SequenceIO) -> CfC:
        return CfC(self, io)


class MixedMemoryLSTM(nn.Module):
    """The LSTM cell of CfC-mmRNN (as ncps' LSTMCell, with a configurable forget bias).

    Gates ``i, ig, fg, og = input_map(x) + recurrent_map(h)``;
    ``c' = c·σ(fg + forget_bias) + tanh(i)·σ(ig)``, ``h' = tanh(c')·σ(og)``.
    """

    def __init__(self, input_size: int, hidden: int, forget_bias: float, zero_bias: bool):
        super().__init__()
        self.forget_bias = forget_bias
        self.input_map = nn.Linear(input_size, 4 * hidden)
        self.recurrent_map = nn.Linear(hidden, 4 * hidden, bias=False)
        nn.init.xavier_uniform_(self.input_map.weight)
        nn.init.uniform_(self.input_map.bias, *((0.0, 0.0) if zero_bias else (-0.1, 0.1)))
        nn.init.orthogonal_(self.recurrent_map.weight)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step: ``(h', c')`` from the input ``x`` and the state ``(h, c)``."""
        i, ig, fg, og = (self.input_map(x) + self.recurrent_map(h)).chunk(4, dim=1)
        c = c * torch.sigmoid(fg + self.forget_bias) + torch.tanh(i) * torch.sigmoid(ig)
        return torch.tanh(c) * torch.sigmoid(og), c


class CfC(SequenceModel):
    """The CfC network of the module docstring and its linear readout; ``states`` and
    ``last_states`` run the fused loop, ``reference_states`` the plain step."""

    def __init__(self, cfg: CfCConfig, io: SequenceIO):
        super().__init__(io, cfg.hidden)
        self.mode = CfCMode(cfg.mode)
        self.head_shape = HEAD_SHAPES[HeadActivation(cfg.head_activation)]
        kind = cfg.backbone_activation
        self.activation = Activation[kind] if isinstance(kind, str) else kind
        self.dropout = cfg.backbone_dropout
        self.dropout_first_layer = cfg.dropout_first_layer
        self.script = cfg.script
        hidden = cfg.hidden
        self.coupled_input = cfg.mixed_memory and Coupling(cfg.coupling) is Coupling.tensorflow
        width = (hidden if self.coupled_input else io.input_size) + hidden
        layers = []
        for _ in range(cfg.backbone_layers):
            layers.append(nn.Linear(width, cfg.backbone_units))
            width = cfg.backbone_units
        self.backbone = nn.ModuleList(layers)
        n_heads = 1 if self.mode is CfCMode.pure else 4  # [f1, f2, ta, tb] fused
        self.heads = nn.Linear(width, n_heads * hidden)
        if self.mode is CfCMode.pure:
            self.A = nn.Parameter(torch.ones(1, hidden))
            self.w_tau = nn.Parameter(torch.zeros(1, hidden))
        if cfg.init_gain is not None:
            # As the reference: every matrix of the cell (A and w_tau included, unless
            # pure_init says otherwise) gets its own xavier draw, each fused head with its own
            # fans ([H, units], not [4H, units]); the readout is outside the cell and keeps
            # torch's default.
            constants = ("A", "w_tau") if PureInit(cfg.pure_init) is PureInit.constant else ()
            with torch.no_grad():
                for name, p in self.named_parameters():
                    if p.dim() != 2 or name.startswith("readout.") or name in constants:
                        continue
                    for block in p.chunk(n_heads) if p is self.heads.weight else (p,):
                        nn.init.xavier_uniform_(block, gain=cfg.init_gain)
        self.lstm = (
            MixedMemoryLSTM(io.input_size, hidden, cfg.forget_bias, zero_bias=self.coupled_input)
            if cfg.mixed_memory
            else None
        )

    def kernels(self) -> list[nn.Parameter]:
        """The CfC cell's dense kernels (backbone and heads), as the TensorFlow cell
        regularises them: not the mixed-memory LSTM's matrices, ``A`` or ``w_tau``."""
        return [layer.weight for layer in (*self.backbone, self.heads)]

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.coupled_input:  # no fused loop for this coupling
            return self.reference_states(x, dt)
        return self.recurrence(x, dt, None).transpose(0, 1)

    def last_states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.coupled_input:
            return super().last_states(x, dt, mask)
        # The loop picks them itself, so its backward pass needs no [T,B,H] gradient of zeros.
        return self.recurrence(x, dt, last_steps(mask))

    def recurrence(self, x: Tensor, dt: Tensor, last: Tensor | None) -> Tensor:
        """Time-major states ``[T,B,H]``, or with ``last`` (``[B]`` steps) each sample's state
        after its step ``last[b]``, ``[B,H]``."""
        if dt.requires_grad:
            raise ValueError("CfC gives no gradient for the elapsed times dt; pass dt.detach()")
        first = self.backbone[0] if len(self.backbone) else self.heads
        hidden = [t for layer in self.backbone[1:] for t in (layer.weight, layer.bias)]
        heads = (self.heads.weight, self.heads.bias) if len(self.backbone) else (None, None)
        pure = (self.A, self.w_tau) if self.mode is CfCMode.pure else (None, None)
        lstm = (None, None, None)
        if self.lstm is not None:
            maps = self.lstm.input_map, self.lstm.recurrent_map
            lstm = (maps[0].weight, maps[0].bias, maps[1].weight)
        kind, shape = LOOP_ACTIVATIONS[self.activation]
        spec = LoopSpec(
            mode=self.mode.value,
            activation=kind,
            activation_shape=shape,
            head_shape=self.head_shape,
            dropout=self.dropout if self.training else 0.0,
            dropout_first_layer=self.dropout_first_layer,
            forget_bias=self.lstm.forget_bias if self.lstm is not None else 0.0,
            script=self.script,
        )
        return Recurrence.apply(
            spec,
            torch.is_grad_enabled(),
            last,
            x.transpose(0, 1),  # time-major, as the loop's per-step buffer
            dt.to(x.dtype).t().unsqueeze(-1),
            first.weight,
            first.bias,
            *heads,
            *pure,
            *lstm,
            *hidden,
        )

    # The reference step: the equations of the module docstring in plain autograd.

    def reference_states(self, x: Tensor, dt: Tensor) -> Tensor:
        """States after every step, ``[B,T,H]``, by :meth:`reference_step` (slow; the check
        of the fused loop)."""
        h = x.new_zeros(x.shape[0], self.readout.in_features)
        c = torch.zeros_like(h)
        states = []
        for t in range(x.shape[1]):
            h, c = self.reference_step(x[:, t], dt[:, t, None].to(x.dtype), h, c)
            states.append(h)
        return torch.stack(states, dim=1)

    def reference_step(self, x: Tensor, dt: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """``(h', c')`` from the input ``x [B,I]``, ``dt [B,1]`` and the state; ``c`` is the
        mixed-memory LSTM's cell state (carried unchanged without one)."""
        if self.lstm is None:
            z = torch.cat([x, h], dim=1)
        elif self.coupled_input:
            u, c = self.lstm(x, h, c)
            z = torch.cat([u, h], dim=1)
        else:
            h, c = self.lstm(x, h, c)
            z = torch.cat([x, h], dim=1)
        q = self.heads(self.features(z))
        if self.mode is CfCMode.pure:
            return self.pure_update(q, dt), c
        return self.gated_update(q, dt), c

    def features(self, z: Tensor) -> Tensor:
        """The backbone: each layer, its activation, then dropout where it applies."""
        for k, layer in enumerate(self.backbone):
            z = activation(self.activation)(layer(z))
            if self.dropout > 0 and (k > 0 or self.dropout_first_layer):
                z = F.dropout(z, self.dropout, self.training)
        return z

    def gated_update(self, q: Tensor, dt: Tensor) -> Tensor:
        """The default (gated) and no-gate updates from the heads ``q = [f1, f2, ta, tb]``."""
        f1, f2, ta, tb = q.chunk(4, dim=1)
        scale, slope = self.head_shape
        g1, g2 = scale * torch.tanh(slope * f1), scale * torch.tanh(slope * f2)
        s = torch.sigmoid(ta * dt + tb)
        if self.mode is CfCMode.no_gate:
            return g1 + s * g2
        return g1 * (1 - s) + s * g2

    def pure_update(self, f: Tensor, dt: Tensor) -> Tensor:
        """Cf-S, the direct solution, from its one head ``f``."""
        return -self.A * torch.exp(-dt * (self.w_tau.abs() + f.abs())) * f + self.A
