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
loop itself runs under TorchScript (``script``), which takes the Python interpreter out of
the per-step work. The inputs' share of the first layer (and of the LSTM) is applied to all
steps at once before the loop, and each step adds the state's share in place. Biases ride in
the matrix products (a column of ones on each layer's input), so no step copies a bias into a
product's output, and the heads' matrix carries the ``2b`` of ``a·tanh(b·f) = a·(2σ(2b·f) − 1)``
(torch's CPU tanh is about 6× slower than its sigmoid). Weight gradients accumulate in place
step by step, while a step's operands are still in cache: one product over all ``T·B`` rows
after the loop, from ``[T,B,·]`` buffers, made the training step slower at the sizes of
``make bench``'s (a) and (b) in a one-off comparison of the two versions (not kept in the
repository). The gradients are checked against finite differences (tests/test_cfc_grad.py)
and against autograd through ncps (tests/test_parity_ncps.py).
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

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel

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
    hidden: int = 64
    backbone_units: int = 128
    backbone_layers: int = 1
    backbone_activation: Activation = Activation.lecun_tanh
    backbone_dropout: float = 0.0
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
        hs = Recurrence.apply(
            spec,
            torch.is_grad_enabled(),
            x.transpose(0, 1),  # time-major, so that each step's slice is contiguous
            dt.to(x.dtype).t().unsqueeze(-1),
            first.weight,
            first.bias,
            *heads,
            *pure,
            *lstm,
            *hidden,
        )
        return hs.transpose(0, 1)


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


def lstm_step(gates: Tensor, c: Tensor, forget_bias: float) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Mixed-memory LSTM step from the gates' pre-activations; returns ``h, c, tape``."""
    i, ig, fg, og = gates.chunk(4, dim=1)
    ti, si, sf, so = (
        fast_tanh(i),
        torch.sigmoid(ig),
        torch.sigmoid(fg + forget_bias),
        torch.sigmoid(og),
    )
    c_new = torch.addcmul(c * sf, ti, si)
    tc = fast_tanh(c_new)
    return tc * so, c_new, [c, ti, si, sf, so, tc]


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
    s1, s2 = sig[:, :hidden], sig[:, hidden:]
    d_f1, d_f2 = out[:, :hidden], out[:, hidden : 2 * hidden]  # written in place
    d_ta, d_tb = out[:, 2 * hidden : 3 * hidden], out[:, 3 * hidden :]
    torch.mul(dh, s, out=d_f2)  # gradient of g(q2), g(q) = a·(2σ(q) − 1)
    if mode == "no_gate":  # h = g(q1) + s·g(q2)
        d_f1.copy_(dh)
        d_s = s2.mul(2 * scale).sub_(scale).mul_(dh)
    else:  # h = g(q1)·(1 − s) + s·g(q2)
        torch.sub(dh, d_f2, out=d_f1)
        d_s = torch.sub(s2, s1).mul_(dh).mul_(2 * scale)
    out[:, : 2 * hidden].mul_(torch.addcmul(sig, sig, sig, value=-1.0).mul_(2 * scale))
    torch.mul(d_s, torch.addcmul(s, s, s, value=-1.0), out=d_tb)  # σ' = σ(1 − σ)
    torch.mul(d_tb, dt, out=d_ta)
    return out, None, None


def forward_loop(
    spec: LoopSpec,
    keep: bool,
    x_proj: Tensor,
    lstm_proj: Tensor | None,
    dt: Tensor,
    w_rec_t: Tensor,
    layers_t: list[Tensor],
    A: Tensor | None,
    w_tau: Tensor | None,
    lstm_rec_t: Tensor | None,
) -> tuple[Tensor, list[Tensor]]:
    """States ``hs [T,B,H]`` and, with ``keep``, the tape: per step the LSTM's output and
    tape (mixed memory), per backbone layer its pre-activation, activation, dropout mask and
    next input ``[y·mask ; 1]``, then the update's tape. ``x_proj`` and ``lstm_proj`` (the
    inputs' shares) are the loop's own buffers: each step adds the state's share in place."""
    scale, slope = spec.activation_shape
    steps, batch = x_proj.shape[0], x_proj.shape[1]
    hs = x_proj.new_empty(steps, batch, w_rec_t.shape[0])
    h = x_proj.new_zeros(batch, w_rec_t.shape[0])
    c = torch.zeros_like(h)
    tape: list[Tensor] = []
    for t in range(steps):
        if lstm_rec_t is not None and lstm_proj is not None:
            h, c, lstm_tape = lstm_step(lstm_proj[t].addmm_(h, lstm_rec_t), c, spec.forget_bias)
            if keep:
                tape.append(h)
                tape.extend(lstm_tape)
        q = x_proj[t].addmm_(h, w_rec_t)
        for k in range(len(layers_t)):
            units = q.shape[1]
            y_in = q.new_empty(batch, units + 1)
            y_in[:, units].fill_(1.0)
            if spec.dropout > 0 and (k > 0 or spec.dropout_first_layer):
                # After the second and later layers (as ncps; the same random draws), and
                # after the first one too with dropout_first_layer.
                y = activate(spec.activation, scale, slope, q, torch.empty_like(q))
                mask = F.dropout(torch.ones_like(y), spec.dropout)
                torch.mul(y, mask, out=y_in[:, :units])
            else:
                y = activate(spec.activation, scale, slope, q, y_in[:, :units])
                mask = y_in[:, units:]  # no mask; a view keeps the tape's layout
            if keep:
                tape.extend([q, y, mask, y_in])
            q = torch.mm(y_in, layers_t[k])
        update_tape = update_step(spec.mode, spec.head_shape[0], q, dt[t], A, w_tau, hs[t])
        if keep:
            tape.extend(update_tape)
        h = hs[t]
    return hs, tape


def backward_loop(
    spec: LoopSpec,
    d_hs: Tensor,
    hs: Tensor,
    dt: Tensor,
    w_rec: Tensor,
    weights: list[Tensor],
    A: Tensor | None,
    w_tau: Tensor | None,
    lstm_rec: Tensor | None,
    tape: list[Tensor],
) -> tuple[
    Tensor, Tensor | None, Tensor, list[Tensor], Tensor | None, Tensor | None, Tensor | None
]:
    """Backpropagation through time from ``d_hs [T,B,H]``. ``weights``: each backbone layer's
    after the first and the heads', ``[out, in]``. Returns the first layer's pre-activation
    gradients ``[T,B,·]``, the LSTM gates' (or None), and the weight gradients as products
    give them, ``[in, out]`` (bias in the last row of each of ``weights``'): the state's share
    of the first layer, ``weights``, ``A``, ``w_tau`` and the LSTM's recurrent matrix."""
    scale, slope = spec.activation_shape
    steps, batch, hidden = d_hs.shape[0], d_hs.shape[1], d_hs.shape[2]
    n_layers = len(weights)
    mixed = lstm_rec is not None
    stride = 7 * int(mixed) + 4 * n_layers + 2  # tape entries per step
    g_rec = w_rec.new_zeros(hidden, w_rec.shape[0])
    g_layers = [w.new_zeros(w.shape[1] + 1, w.shape[0]) for w in weights]
    g_A = None if A is None else torch.zeros_like(A)
    g_w_tau = None if w_tau is None else torch.zeros_like(w_tau)
    d_x = d_hs.new_empty(steps, batch, w_rec.shape[0])
    d_lstm_x: Tensor | None = None
    g_lstm: Tensor | None = None
    if lstm_rec is not None:
        d_lstm_x = d_hs.new_empty(steps, batch, lstm_rec.shape[0])
        g_lstm = lstm_rec.new_zeros(hidden, lstm_rec.shape[0])
    dh = torch.zeros_like(d_hs[0])
    dc = torch.zeros_like(dh)
    h0 = torch.zeros_like(dh)
    d_heads = d_hs.new_empty(0)  # the heads' gradient is used up within a step: one buffer
    if n_layers > 0:
        d_heads = d_hs.new_empty(batch, weights[n_layers - 1].shape[0])
    for i in range(steps):
        t = steps - 1 - i
        base = t * stride
        h_prev = hs[t - 1] if t > 0 else h0
        h_in = tape[base] if mixed else h_prev  # the first layer's state input
        layers_base = base + 7 * int(mixed)
        update_base = layers_base + 4 * n_layers
        dh.add_(d_hs[t])
        dq, d_A, d_w_tau = update_step_grad(
            spec.mode,
            spec.head_shape[0],
            dh,
            tape[update_base : update_base + 2],
            dt[t],
            A,
            w_tau,
            d_x[t] if n_layers == 0 else d_heads,
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
            slot = d_x[t] if k == 0 else torch.empty_like(a)
            dq = activation_grad(spec.activation, scale, slope, dz, a, y, slot)
        # dq, the first layer's pre-activation gradient, is d_x[t]
        g_rec.addmm_(h_in.t(), dq)
        if mixed or t > 0:  # the initial state is zero: nothing flows into it
            dh = torch.mm(dq, w_rec)
        if lstm_rec is not None and d_lstm_x is not None and g_lstm is not None:
            d_gates, dc = lstm_step_grad(dh, dc, tape[base + 1 : base + 7], d_lstm_x[t])
            g_lstm.addmm_(h_prev.t(), d_gates)
            if t > 0:
                dh = torch.mm(d_gates, lstm_rec)
    return d_x, d_lstm_x, g_rec, g_layers, g_A, g_w_tau, g_lstm


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

    Inputs: the loop's :class:`LoopSpec`, ``keep`` (False for inference: no tape), ``xs
    [T,B,I]`` (time-major), ``dt [T,B,1]``, then the parameters: the first layer's weight
    and bias (the heads' when there is no backbone), the heads' (or None), ``A, w_tau``
    (Cf-S), the LSTM's input map and recurrent matrix (mixed memory), and weight and bias of
    every backbone layer after the first. Returns ``h [T,B,H]``.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        spec: LoopSpec,
        keep: bool,
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
        *hidden: Tensor,
    ) -> Tensor:
        n_in = xs.shape[2]
        xs1 = torch.cat([xs, xs.new_ones(*xs.shape[:2], 1)], dim=2)
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
        weights = [*hidden[0::2], heads_w] if heads_w is not None else []
        biases = [*hidden[1::2], heads_b] if heads_w is not None else []
        w_in, w_rec = first_w[:, :n_in], first_w[:, n_in:]
        lstm_proj = None if lstm_in_w is None else xs1 @ with_bias(lstm_in_w, lstm_in_b).t()
        loop = scripted(forward_loop) if spec.script else forward_loop
        hs, tape = loop(
            spec,
            keep,
            xs1 @ with_bias(w_in, first_b).t(),
            lstm_proj,
            dt,
            w_rec.t(),
            [with_bias(w, b).t().contiguous() for w, b in zip(weights, biases, strict=True)],
            A,
            w_tau,
            None if lstm_rec is None else lstm_rec.t(),
        )
        if keep:
            ctx.spec, ctx.n_weights = spec, len(weights)
            ctx.save_for_backward(
                xs1, dt, w_in, w_rec, head_rows, A, w_tau, lstm_in_w, lstm_rec, hs, *weights, *tape
            )
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, d_hs: Tensor) -> tuple:
        xs1, dt, w_in, w_rec, head_rows, A, w_tau, lstm_in_w, lstm_rec, hs, *rest = (
            ctx.saved_tensors
        )
        spec, n_weights = ctx.spec, ctx.n_weights
        weights, tape = list(rest[:n_weights]), list(rest[n_weights:])
        loop = scripted(backward_loop) if spec.script else backward_loop
        d_x, d_lstm_x, g_rec, g_layers, g_A, g_w_tau, g_lstm = loop(
            spec, d_hs.contiguous(), hs, dt, w_rec, weights, A, w_tau, lstm_rec, tape
        )
        n_in = w_in.shape[1]
        inputs = xs1.flatten(0, 1)
        # The inputs' shares (bias included, from the ones column): one product over all steps.
        g_first = d_x.flatten(0, 1).t() @ inputs
        g_first_w = torch.cat([g_first[:, :n_in], g_rec.t()], dim=1)
        g_first_b = g_first[:, n_in]
        g_hidden = [g for layer in g_layers for g in (layer[:-1].t(), layer[-1])]
        if head_rows is not None and n_weights:
            g_hidden[-2:] = [g_hidden[-2] * head_rows, g_hidden[-1] * head_rows[:, 0]]
        elif head_rows is not None:
            g_first_w, g_first_b = g_first_w * head_rows, g_first_b * head_rows[:, 0]
        g_xs = g_lstm_in_w = g_lstm_in_b = None
        if ctx.needs_input_grad[2]:
            g_xs = d_x @ w_in
        if d_lstm_x is not None:
            g_lstm_in = d_lstm_x.flatten(0, 1).t() @ inputs
            g_lstm_in_w, g_lstm_in_b = g_lstm_in[:, :n_in], g_lstm_in[:, n_in]
            if g_xs is not None:
                g_xs = g_xs + d_lstm_x @ lstm_in_w
        g_heads = g_hidden[-2:] if n_weights else [None, None]
        return (
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
