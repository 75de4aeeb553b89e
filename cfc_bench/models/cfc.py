"""Closed-form continuous-time networks (CfC): gated, no-gate, pure (Cf-S), mixed memory.

With ``z = backbone([x_t ; h_{t-1}])`` and heads ``f1, f2, ta, tb`` (one fused matrix):
  default  h = tanh(f1)·(1 − s) + s·tanh(f2),  s = sigmoid(ta·dt + tb)
  no_gate  h = tanh(f1) + s·tanh(f2)
  pure     h = −A·exp(−dt·(|w_tau| + |f1|))·f1 + A      (Cf-S, the direct solution)
The backbone is ``backbone_layers`` linear layers, each followed by the activation (and,
from the second layer on, or from the first with ``dropout_first_layer``, by dropout);
with no layers the heads read ``[x_t ; h_{t-1}]``. ``head_activation=lecun_tanh`` puts
LeCun's ``1.7159·tanh(0.666·x)`` in place of ``tanh`` on ``f1, f2``, as the TensorFlow cell.
With ``mixed_memory`` an LSTM cell first updates ``(h, c)`` from ``x_t`` and the CfC
update then reads the LSTM's output state (CfC-mmRNN).

Numerically equal to ``ncps.torch.CfC`` given the same weights (tests/test_parity_ncps.py),
except that ``dt`` is always ``[B,1]`` per sample, so a batch whose size equals the hidden
size never broadcasts time across units.

Speed (CPU, ``make bench``): the time loop is one autograd node, :class:`Recurrence`, with
the backward pass through time written out; step-by-step autograd records ~15 nodes and
their saved tensors per step, which on CPU cost about as much as the matrix products. The
loop runs under TorchScript (``script``), which takes the Python interpreter out of the
per-step work. Each step's first layer is one product with ``[x_t ; 1 ; h]``, read from a
buffer into which the previous step wrote its state; every layer's input carries that
column of ones, so biases ride in the products and no step adds or copies one. The heads'
matrix carries the ``2b`` of ``a·tanh(b·f) = a·(2σ(2b·f) − 1)`` (torch's CPU tanh is about
6× slower than its sigmoid). Weight gradients accumulate in place step by step, while a
step's operands are still in cache; pre-activation gradients go to one buffer per layer,
used up within the step. Outputs at the last valid step are picked inside the loop
(``last_states``), so the backward pass gets their gradient, not a ``[T,B,H]`` one of
zeros. The gradients are checked against finite differences (tests/test_cfc_grad.py) and
against autograd through ncps (tests/test_parity_ncps.py).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel, last_steps
from cfc_bench.ranges import ranged

LECUN_SCALE, LECUN_SLOPE = 1.7159, 0.666


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """``tanh(x)`` computed as ``2·sigmoid(2x) − 1``: the same function, faster on CPU."""
    return torch.sigmoid(2 * x).mul_(2).sub_(1)


class LeCunTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return LECUN_SCALE * fast_tanh(LECUN_SLOPE * x)


class Activation(Enum):
    silu = nn.SiLU
    relu = nn.ReLU
    tanh = nn.Tanh
    gelu = nn.GELU
    lecun_tanh = LeCunTanh


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
    init_gain: float | None = 1.0  # xavier-uniform gain of the cell's matrices; None: torch's
    pure_init: PureInit = PureInit.xavier  # Cf-S only
    script: bool = True  # run the time loop under TorchScript; False: the same code in Python

    def build(self, io: SequenceIO) -> CfC:
        return CfC(self, io)


def activation(kind: Activation | str) -> nn.Module:
    """A fresh activation module, from the enum or its name."""
    return (Activation[kind] if isinstance(kind, str) else kind).value()


class MixedMemoryLSTM(nn.Module):
    """The LSTM cell of CfC-mmRNN (as ncps' LSTMCell, with a configurable forget bias).

    Gates ``i, ig, fg, og = input_map(x) + recurrent_map(h)``;
    ``c' = c·σ(fg + forget_bias) + tanh(i)·σ(ig)``, ``h' = tanh(c')·σ(og)``.
    """

    def __init__(self, input_size: int, hidden: int, forget_bias: float):
        super().__init__()
        self.forget_bias = forget_bias
        self.input_map = nn.Linear(input_size, 4 * hidden)
        self.recurrent_map = nn.Linear(hidden, 4 * hidden, bias=False)
        nn.init.xavier_uniform_(self.input_map.weight)
        nn.init.uniform_(self.input_map.bias, -0.1, 0.1)
        nn.init.orthogonal_(self.recurrent_map.weight)


class CfC(SequenceModel):
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
        width = io.input_size + hidden
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
            MixedMemoryLSTM(io.input_size, hidden, cfg.forget_bias) if cfg.mixed_memory else None
        )

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.recurrence(x, dt, None).transpose(0, 1)

    def last_states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
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


# The time loop. The functions below are TorchScript: with ``script`` (the default) they run
# under torch.jit.script, whose interpreter takes the Python overhead out of the per-step
# work; otherwise as plain Python. Pre-activations enter the loop with their bias applied by
# the matrix product: every layer's input carries a column of ones and every weight matrix its
# bias as the last row, so no step adds a bias or copies one into a product's output.


class LoopSpec(NamedTuple):
    """What the time loop needs to know of the model, as plain values (TorchScript reads it)."""

    mode: str
    activation: str  # a kind of LOOP_ACTIVATIONS
    activation_shape: tuple[float, float]
    head_shape: tuple[float, float]
    dropout: float  # 0 in evaluation mode
    dropout_first_layer: bool
    forget_bias: float
    script: bool


# Each backbone activation as the loop's (kind, (scale, slope)); ``tanh``: scale·tanh(slope·x).
LOOP_ACTIVATIONS = {
    Activation.silu: ("silu", (1.0, 1.0)),
    Activation.relu: ("relu", (1.0, 1.0)),
    Activation.gelu: ("gelu", (1.0, 1.0)),
    Activation.tanh: ("tanh", HEAD_SHAPES[HeadActivation.tanh]),
    Activation.lecun_tanh: ("tanh", HEAD_SHAPES[HeadActivation.lecun_tanh]),
}


def activate(kind: str, scale: float, slope: float, a: Tensor, out: Tensor) -> Tensor:
    """The backbone activation of ``a`` written to ``out``; ``tanh`` means ``scale·tanh(slope·a)``
    (tanh, LeCun's tanh)."""
    if kind == "silu":
        return torch.ops.aten.silu(a, out=out)
    if kind == "relu":
        return torch.clamp_min(a, 0.0, out=out)
    if kind == "gelu":
        return torch.ops.aten.gelu(a, out=out)
    return torch.sigmoid(a * (2 * slope), out=out).mul_(2 * scale).sub_(scale)


def activation_grad(
    kind: str, scale: float, slope: float, g: Tensor, a: Tensor, y: Tensor, out: Tensor
) -> Tensor:
    """Gradient of the pre-activation ``a`` from that of ``y = activate(a)``, written to ``out``."""
    if kind == "silu":
        return torch.ops.aten.silu_backward(g, a, grad_input=out)
    if kind == "relu":
        return torch.ops.aten.threshold_backward(g, a, 0.0, grad_input=out)
    if kind == "gelu":
        return torch.ops.aten.gelu_backward(g, a, grad_input=out)
    return torch.ops.aten.tanh_backward(g, y / scale, grad_input=out).mul_(scale * slope)


def lstm_step(
    gates: Tensor, c: Tensor, forget_bias: float, out: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """Mixed-memory LSTM step from the gates' pre-activations; writes ``h`` to ``out`` and
    returns ``c, tape``."""
    i, ig, fg, og = gates.chunk(4, dim=1)
    ti, si, sf, so = (
        fast_tanh(i),
        torch.sigmoid(ig),
        torch.sigmoid(fg + forget_bias),
        torch.sigmoid(og),
    )
    c_new = torch.addcmul(c * sf, ti, si)
    tc = fast_tanh(c_new)
    torch.mul(tc, so, out=out)
    return c_new, [c, ti, si, sf, so, tc]


def lstm_step_grad(
    dh: Tensor, dc: Tensor, tape: list[Tensor], out: Tensor
) -> tuple[Tensor, Tensor]:
    """Gradients of the gates' pre-activations (written to ``out``) and of the incoming cell
    state."""
    c, ti, si, sf, so, tc = tape
    dc = torch.addcmul(dc, dh * so, 1 - tc * tc)
    d_i = dc * si * (1 - ti * ti)
    d_ig = dc * ti * si * (1 - si)
    d_fg = dc * c * sf * (1 - sf)
    d_og = dh * tc * so * (1 - so)
    return torch.cat([d_i, d_ig, d_fg, d_og], dim=1, out=out), dc * sf


def update_step(
    mode: str,
    scale: float,
    q: Tensor,
    dt: Tensor,
    A: Tensor | None,
    w_tau: Tensor | None,
    out: Tensor,
) -> list[Tensor]:
    """The CfC update written to ``out`` from the heads' output ``q`` and ``dt [B,1]``; returns
    the step's tape.

    The heads' matrix carries the factor ``2b`` of ``f1, f2`` (heads ``a·tanh(b·f)``), so
    ``q = [2b·f1, 2b·f2, ta, tb]`` and ``a·tanh(b·f) = a·(2σ(2b·f) − 1)``: the gated update is
    ``a·(2·lerp(σ(q1), σ(q2), s) − 1)``. Cf-S reads ``q = f1`` (one head).
    """
    if mode == "pure":
        assert A is not None and w_tau is not None
        e = torch.exp(-dt * (w_tau.abs() + q.abs()))
        torch.addcmul(A, A * e, q, value=-1.0, out=out)
        return [q, e]
    hidden = out.shape[1]
    sig = torch.sigmoid(q[:, : 2 * hidden])
    s = torch.sigmoid(torch.addcmul(q[:, 3 * hidden :], q[:, 2 * hidden : 3 * hidden], dt))
    if mode == "no_gate":
        g = sig.mul(2 * scale).sub_(scale)
        torch.addcmul(g[:, :hidden], s, g[:, hidden:], out=out)
    else:
        torch.lerp(sig[:, :hidden], sig[:, hidden:], s, out=out).mul_(2 * scale).sub_(scale)
    return [sig, s]


def update_step_grad(
    mode: str,
    scale: float,
    dh: Tensor,
    tape: list[Tensor],
    dt: Tensor,
    A: Tensor | None,
    w_tau: Tensor | None,
    out: Tensor,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Gradient of ``q`` (written to ``out``, ``[B,4H]``, Cf-S ``[B,H]``) and, for Cf-S, of ``A``
    and ``w_tau``, from that of ``h``."""
    if mode == "pure":
        assert A is not None and w_tau is not None
        q, e = tape
        torch.mul(-dh * A * e, 1 - dt * q.abs(), out=out)
        d_A = (dh * (1 - e * q)).sum(0, keepdim=True)
        d_w_tau = (dh * A * e * q * dt).sum(0, keepdim=True) * w_tau.sign()
        return out, d_A, d_w_tau
    sig, s = tape
    hidden = s.shape[1]
    s1, s2 = sig.chunk(2, dim=1)
    d_f1, d_f2, d_ta, d_tb = out.split(hidden, dim=1)  # written in place
    # g(q) = a·(2σ(q) − 1), so the factor 2a of dg/dσ goes on dh once.
    dh2 = dh * (2 * scale)
    torch.mul(dh2, s, out=d_f2)
    if mode == "no_gate":  # h = g(q1) + s·g(q2)
        d_f1.copy_(dh2)
        d_s = torch.sub(s2, 0.5).mul_(dh2)
    else:  # h = g(q1)·(1 − s) + s·g(q2)
        torch.sub(dh2, d_f2, out=d_f1)
        d_s = torch.sub(s2, s1).mul_(dh2)
    out[:, : 2 * hidden].mul_(torch.addcmul(sig, sig, sig, value=-1.0))  # σ' = σ(1 − σ)
    torch.mul(d_s, torch.addcmul(s, s, s, value=-1.0), out=d_tb)
    torch.mul(d_tb, dt, out=d_ta)
    return out, None, None


def forward_loop(
    spec: LoopSpec,
    keep: bool,
    z: Tensor,
    state_in: Tensor,
    hs: Tensor,
    dt: Tensor,
    w_first_t: Tensor,
    layers_t: list[Tensor],
    A: Tensor | None,
    w_tau: Tensor | None,
    lstm_proj: Tensor | None,
    lstm_rec_t: Tensor | None,
) -> list[Tensor]:
    """Fills ``hs [T,B,H]`` with the states and returns, with ``keep``, the tape: per step the
    LSTM's tape (mixed memory), per backbone layer its pre-activation, activation, dropout
    mask and next input ``[y·mask ; 1]``, then the update's tape.

    ``z [·,B,I+1+H]`` holds each step's first-layer input ``[x_t ; 1 ; h]``, ``state_in`` is
    its ``h`` part: the previous state, which ``hs`` (a view of ``state_in`` shifted by one
    step) puts there, or with mixed memory the LSTM's output, which the LSTM writes there.
    """
    scale, slope = spec.activation_shape
    steps, batch = dt.shape[0], dt.shape[1]
    # Each layer's next input [y ; 1] for every step (one step's for inference): the column
    # of ones is filled once.
    n_slots = steps if keep else 1
    inputs = [z.new_empty(n_slots, batch, w.shape[0]) for w in layers_t]
    for buffer in inputs:
        buffer[:, :, -1].fill_(1.0)
    h = hs.new_zeros(batch, hs.shape[2])
    c = torch.zeros_like(h)
    no_mask = h.new_empty(0)  # keeps the tape's layout where a layer has no dropout
    tape: list[Tensor] = []
    for t in range(steps):
        if lstm_rec_t is not None and lstm_proj is not None:
            gates = lstm_proj[t].addmm_(h, lstm_rec_t)
            c, lstm_tape = lstm_step(gates, c, spec.forget_bias, state_in[t])
            if keep:
                tape.extend(lstm_tape)
        q = torch.mm(z[t], w_first_t)
        for k in range(len(layers_t)):
            y_in = inputs[k][t if keep else 0]
            units = q.shape[1]
            if spec.dropout > 0 and (k > 0 or spec.dropout_first_layer):
                # After the second and later layers (as ncps; the same random draws), and
                # after the first one too with dropout_first_layer.
                y = activate(spec.activation, scale, slope, q, torch.empty_like(q))
                mask = F.dropout(torch.ones_like(y), spec.dropout)
                torch.mul(y, mask, out=y_in[:, :units])
            else:
                y = activate(spec.activation, scale, slope, q, y_in[:, :units])
                mask = no_mask
            if keep:
                tape.extend([q, y, mask, y_in])
            q = torch.mm(y_in, layers_t[k])
        update_tape = update_step(spec.mode, spec.head_shape[0], q, dt[t], A, w_tau, hs[t])
        if keep:
            tape.extend(update_tape)
        h = hs[t]
    return tape


def backward_loop(
    spec: LoopSpec,
    input_grad: bool,
    d_hs: Tensor,
    picks: Tensor | None,
    z: Tensor,
    hs: Tensor,
    dt: Tensor,
    w_first: Tensor,
    n_in: int,
    weights: list[Tensor],
    A: Tensor | None,
    w_tau: Tensor | None,
    lstm_rec: Tensor | None,
    tape: list[Tensor],
) -> tuple[
    Tensor,
    Tensor | None,
    Tensor | None,
    list[Tensor],
    Tensor | None,
    Tensor | None,
    Tensor | None,
]:
    """Backpropagation through time from the states' gradient ``d_hs [T,B,H]``, or with
    ``picks`` (``[T,B,1]``, one where step t is sample b's output) from the outputs' ``[B,H]``.
    ``w_first`` is the first layer's ``[out, I+1+H]`` (as ``z``), ``weights`` each later
    backbone layer's and the heads' ``[out, in]``. Returns the weight gradients as the
    products give them, ``[in, out]``, with the bias in the row of the ones column: the first
    layer's, then (with ``input_grad``) the inputs' ``[T,B,I]``, the LSTM gates'
    pre-activations ``[T,B,4H]``, ``weights``', ``A``'s, ``w_tau``'s and the LSTM's recurrent
    matrix's."""
    scale, slope = spec.activation_shape
    steps, batch, hidden = hs.shape[0], hs.shape[1], hs.shape[2]
    n_layers = len(weights)
    mixed = lstm_rec is not None
    stride = 6 * int(mixed) + 4 * n_layers + 2  # tape entries per step
    # Contiguous copies: products with column slices of w_first measured slower.
    w_in, w_rec = w_first[:, :n_in].contiguous(), w_first[:, n_in + 1 :].contiguous()
    g_first = w_first.new_zeros(w_first.shape[1], w_first.shape[0])
    g_layers = [w.new_zeros(w.shape[1] + 1, w.shape[0]) for w in weights]
    g_A = None if A is None else torch.zeros_like(A)
    g_w_tau = None if w_tau is None else torch.zeros_like(w_tau)
    g_x = d_hs.new_empty(steps, batch, n_in) if input_grad else None
    d_lstm_x: Tensor | None = None
    g_lstm: Tensor | None = None
    if lstm_rec is not None:
        d_lstm_x = d_hs.new_empty(steps, batch, lstm_rec.shape[0])
        g_lstm = lstm_rec.new_zeros(hidden, lstm_rec.shape[0])
    dh = hs.new_zeros(batch, hidden)
    dc = torch.zeros_like(dh)
    h0 = torch.zeros_like(dh)
    # Pre-activation gradients are used up within a step: one buffer per layer serves all.
    d_first = d_hs.new_empty(batch, w_first.shape[0])
    d_heads = d_first if n_layers == 0 else d_hs.new_empty(batch, weights[n_layers - 1].shape[0])
    for i in range(steps):
        t = steps - 1 - i
        base = t * stride
        layers_base = base + 6 * int(mixed)
        update_base = layers_base + 4 * n_layers
        if picks is None:
            dh.add_(d_hs[t])
        else:
            dh.addcmul_(d_hs, picks[t])
        dq, d_A, d_w_tau = update_step_grad(
            spec.mode,
            spec.head_shape[0],
            dh,
            tape[update_base : update_base + 2],
            dt[t],
            A,
            w_tau,
            d_heads,
        )
        if g_A is not None and g_w_tau is not None and d_A is not None and d_w_tau is not None:
            g_A.add_(d_A)
            g_w_tau.add_(d_w_tau)
        for k in range(n_layers - 1, -1, -1):  # the heads, then the backbone downwards
            a, y, mask, y_in = tape[layers_base + 4 * k : layers_base + 4 * k + 4]
            g_layers[k].addmm_(y_in.t(), dq)
            dz = torch.mm(dq, weights[k])
            if spec.dropout > 0 and (k > 0 or spec.dropout_first_layer):
                dz.mul_(mask)
            slot = d_first if k == 0 else torch.empty_like(a)
            dq = activation_grad(spec.activation, scale, slope, dz, a, y, slot)
        g_first.addmm_(z[t].t(), dq)
        if g_x is not None:
            torch.mm(dq, w_in, out=g_x[t])
        if mixed or t > 0:  # the initial state is zero: nothing flows into it
            dh = torch.mm(dq, w_rec)
        if lstm_rec is not None and d_lstm_x is not None and g_lstm is not None:
            d_gates, dc = lstm_step_grad(dh, dc, tape[base : base + 6], d_lstm_x[t])
            h_prev = hs[t - 1] if t > 0 else h0
            g_lstm.addmm_(h_prev.t(), d_gates)
            if t > 0:
                dh = torch.mm(d_gates, lstm_rec)
    return g_first, g_x, d_lstm_x, g_layers, g_A, g_w_tau, g_lstm


@functools.cache
def scripted(fn: Callable) -> Callable:
    with warnings.catch_warnings():
        # torch.jit.script is deprecated in torch 2.x; torch.compile would unroll the loop.
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(fn)


def with_bias(weight: Tensor, bias: Tensor) -> Tensor:
    """``[out, in + 1]``: the weight with its bias as a last column."""
    return torch.cat([weight, bias.unsqueeze(1)], dim=1)


class Recurrence(torch.autograd.Function):
    """The CfC time loop as one autograd node, with backpropagation through time by hand.

    Inputs: the loop's :class:`LoopSpec`, ``keep`` (False for inference: no tape), ``last``
    (None, or ``[B]``: the step whose state each sample returns), ``xs [T,B,I]`` (time-major),
    ``dt [T,B,1]``, then the parameters: the first layer's weight and bias (the heads' when
    there is no backbone), the heads' (or None), ``A, w_tau`` (Cf-S), the LSTM's input map and
    recurrent matrix (mixed memory), and weight and bias of every backbone layer after the
    first. Returns ``h [T,B,H]``, or with ``last`` ``[B,H]``.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        spec: LoopSpec,
        keep: bool,
        last: Tensor | None,
        xs: Tensor,
        dt: Tensor,
        first_w: Tensor,
        first_b: Tensor,
        heads_w: Tensor | None,
        heads_b: Tensor | None,
        A: Tensor | None,
        w_tau: Tensor | None,
        lstm_in_w: Tensor | None,
        lstm_in_b: Tensor | None,
        lstm_rec: Tensor | None,
        *hidden_wb: Tensor,
    ) -> Tensor:
        steps, batch, n_in = xs.shape
        hidden = first_w.shape[1] - n_in  # the first layer reads [x_t ; h]
        # The heads' rows of f1, f2 times 2b (see update_step); undone on their gradients.
        head_rows = None
        if spec.mode != CfCMode.pure.value:
            matrix = first_w if heads_w is None else heads_w
            head_rows = matrix.new_ones(matrix.shape[0], 1)
            head_rows[: matrix.shape[0] // 2] = 2 * spec.head_shape[1]
            if heads_w is None:
                first_w, first_b = first_w * head_rows, first_b * head_rows[:, 0]
            else:
                heads_w, heads_b = heads_w * head_rows, heads_b * head_rows[:, 0]
        weights = [*hidden_wb[0::2], heads_w] if heads_w is not None else []
        biases = [*hidden_wb[1::2], heads_b] if heads_w is not None else []
        # Every step's first-layer input [x_t ; 1 ; h], the state written by the loop; without
        # mixed memory one more step's holds the last state, and the states are a view.
        mixed = lstm_rec is not None
        z = xs.new_empty(steps + (0 if mixed else 1), batch, n_in + 1 + hidden)
        z[:steps, :, :n_in] = xs
        z[:, :, n_in] = 1.0
        state_in = z[:, :, n_in + 1 :]
        if mixed:
            hs = xs.new_empty(steps, batch, hidden)
        else:
            state_in[0] = 0.0
            hs = state_in[1:]
        w_first = torch.cat([first_w[:, :n_in], first_b.unsqueeze(1), first_w[:, n_in:]], dim=1)
        lstm_proj = lstm_rec_t = None
        if mixed:
            lstm_proj = z[:, :, : n_in + 1] @ with_bias(lstm_in_w, lstm_in_b).t()
            lstm_rec_t = lstm_rec.t()
        loop = scripted(forward_loop) if spec.script else forward_loop
        tape = loop(
            spec,
            keep,
            z,
            state_in,
            hs,
            dt,
            w_first.t(),
            [with_bias(w, b).t().contiguous() for w, b in zip(weights, biases, strict=True)],
            A,
            w_tau,
            lstm_proj,
            lstm_rec_t,
        )
        if keep:
            ctx.spec, ctx.n_weights = spec, len(weights)
            ctx.save_for_backward(
                z, hs, last, dt, w_first, head_rows, A, w_tau, lstm_in_w, lstm_rec, *weights, *tape
            )
        return hs if last is None else hs[last, torch.arange(batch, device=last.device)]

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, d_hs: Tensor) -> tuple:
        z, hs, last, dt, w_first, head_rows, A, w_tau, lstm_in_w, lstm_rec, *rest = (
            ctx.saved_tensors
        )
        spec, n_weights = ctx.spec, ctx.n_weights
        weights, tape = list(rest[:n_weights]), list(rest[n_weights:])
        n_in = z.shape[2] - 1 - hs.shape[2]
        loop = scripted(backward_loop) if spec.script else backward_loop
        g_first, g_xs, d_lstm_x, g_layers, g_A, g_w_tau, g_lstm = loop(
            spec,
            ctx.needs_input_grad[3],
            d_hs,
            None if last is None else F.one_hot(last, dt.shape[0]).t().unsqueeze(-1).to(dt.dtype),
            z,
            hs,
            dt,
            w_first,
            n_in,
            weights,
            A,
            w_tau,
            lstm_rec,
            tape,
        )
        g_first_w = torch.cat([g_first[:n_in], g_first[n_in + 1 :]]).t()
        g_first_b = g_first[n_in]
        g_hidden = [g for layer in g_layers for g in (layer[:-1].t(), layer[-1])]
        if head_rows is not None and n_weights:
            g_hidden[-2:] = [g_hidden[-2] * head_rows, g_hidden[-1] * head_rows[:, 0]]
        elif head_rows is not None:
            g_first_w, g_first_b = g_first_w * head_rows, g_first_b * head_rows[:, 0]
        g_lstm_in_w = g_lstm_in_b = None
        if d_lstm_x is not None:
            # The LSTM's input map (bias from the ones column): one product over all steps.
            g_lstm_in = d_lstm_x.flatten(0, 1).t() @ z[:, :, : n_in + 1].flatten(0, 1)
            g_lstm_in_w, g_lstm_in_b = g_lstm_in[:, :n_in], g_lstm_in[:, n_in]
            if g_xs is not None:
                g_xs = g_xs + d_lstm_x @ lstm_in_w
        g_heads = g_hidden[-2:] if n_weights else [None, None]
        return (
            None,
            None,
            None,
            g_xs,
            None,
            g_first_w,
            g_first_b,
            *g_heads,
            g_A,
            g_w_tau,
            g_lstm_in_w,
            g_lstm_in_b,
            None if g_lstm is None else g_lstm.t(),
            *g_hidden[:-2],
        )
