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
their saved tensors per step, which on CPU cost about as much as the matrix products.
The inputs' share of the first layer (and of the LSTM) is applied to all steps at once
before the loop, and ``tanh`` is evaluated as ``2·sigmoid(2x) − 1`` (torch's CPU tanh is
about 6× slower than its sigmoid). Weight gradients accumulate in place step by step, while
a step's operands are still in cache: one product over all ``T·B`` rows after the loop, from
``[T,B,·]`` buffers, made the training step slower at the sizes of ``make bench``'s (a) and
(b) in a one-off comparison of the two versions (not kept in the repository). The
gradients are checked against finite differences (tests/test_cfc_grad.py) and against
autograd through ncps (tests/test_parity_ncps.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils._pytree import tree_flatten, tree_unflatten

from cfc_bench.models.base import ModelConfig, SequenceIO, SequenceModel

aten = torch.ops.aten

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

    def build(self, io: SequenceIO) -> CfC:
        return CfC(self, io)


def activation(kind: Activation | str) -> nn.Module:
    """A fresh activation module, from the enum or its name."""
    return (Activation[kind] if isinstance(kind, str) else kind).value()


# The activations as plain functions, for the time loop (a module call costs more than silu).
ACTIVATION_FNS: dict[Activation, Callable[[torch.Tensor], torch.Tensor]] = {
    Activation.silu: F.silu,
    Activation.relu: torch.relu,
    Activation.tanh: torch.tanh,
    Activation.gelu: F.gelu,
    Activation.lecun_tanh: lambda x: LECUN_SCALE * fast_tanh(LECUN_SLOPE * x),
}

# Derivative of each backbone activation ``y = act(a)``: (grad of y, a, y, out) -> grad of a,
# written to ``out``.
ACTIVATION_GRADS: dict[Activation, Callable[..., torch.Tensor]] = {
    Activation.silu: lambda g, a, y, out: aten.silu_backward.grad_input(g, a, grad_input=out),
    Activation.relu: lambda g, a, y, out: aten.threshold_backward.grad_input(
        g, y, 0, grad_input=out
    ),
    Activation.tanh: lambda g, a, y, out: aten.tanh_backward.grad_input(g, y, grad_input=out),
    Activation.gelu: lambda g, a, y, out: aten.gelu_backward.grad_input(g, a, grad_input=out),
    Activation.lecun_tanh: lambda g, a, y, out: torch.mul(
        aten.tanh_backward(g, y / LECUN_SCALE), LECUN_SCALE * LECUN_SLOPE, out=out
    ),
}


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
        n_in = x.shape[2]
        xs = x.transpose(0, 1)  # time-major, so that each step's slice is contiguous
        first = self.backbone[0] if len(self.backbone) else self.heads
        x_proj = F.linear(xs, first.weight[:, :n_in], first.bias)
        lstm_proj = self.lstm.input_map(xs) if self.lstm is not None else None
        hidden = [t for layer in self.backbone[1:] for t in (layer.weight, layer.bias)]
        heads = (self.heads.weight, self.heads.bias) if len(self.backbone) else (None, None)
        pure = (self.A, self.w_tau) if self.mode is CfCMode.pure else (None, None)
        lstm_rec = self.lstm.recurrent_map.weight if self.lstm is not None else None
        hs = Recurrence.apply(
            self,
            torch.is_grad_enabled(),
            x_proj,
            lstm_proj,
            dt.to(x.dtype).t().unsqueeze(-1),
            first.weight[:, n_in:],
            *heads,
            *pure,
            lstm_rec,
            *hidden,
        )
        return hs.transpose(0, 1)


Tape = tuple[torch.Tensor, ...]  # what a step keeps for its backward pass


def lstm_step(
    gates_in: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    rec_t: torch.Tensor,
    forget_bias: float,
) -> tuple[torch.Tensor, torch.Tensor, Tape]:
    """Mixed-memory LSTM step from ``gates_in = input_map(x_t)`` and the transposed recurrent
    matrix; returns ``h, c, tape``."""
    i, ig, fg, og = torch.addmm(gates_in, h, rec_t).chunk(4, dim=-1)
    ti, si, sf, so = (
        fast_tanh(i),
        torch.sigmoid(ig),
        torch.sigmoid(fg + forget_bias),
        torch.sigmoid(og),
    )
    c_new = torch.addcmul(c * sf, ti, si)
    tc = fast_tanh(c_new)
    return tc * so, c_new, (c, ti, si, sf, so, tc)


def lstm_step_grad(
    dh: torch.Tensor, dc: torch.Tensor, tape: Tape, out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
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
    mode: CfCMode,
    head: tuple[float, float],
    p: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor | None,
    w_tau: torch.Tensor | None,
    out: torch.Tensor,
) -> tuple[torch.Tensor, Tape]:
    """The CfC update from the heads' pre-activations ``p`` and ``dt [B,1]``, written to
    ``out``; returns ``out, tape``. ``head = (a, b)``: the heads' activation ``a·tanh(b·f)``.

    ``a·tanh(b·f) = a·(2σ(2b·f) − 1)``, so the gated update is
    ``a·(2·lerp(σ(2b·f1), σ(2b·f2), s) − 1)``.
    """
    if mode is CfCMode.pure:
        e = torch.exp(-dt * (w_tau.abs() + p.abs()))
        return torch.addcmul(A, A * e, p, value=-1, out=out), (p, e)
    scale, slope = head
    hidden = p.shape[1] // 4
    sig = torch.sigmoid(2 * slope * p[:, : 2 * hidden])  # σ(2b·f1), σ(2b·f2)
    s = torch.sigmoid(torch.addcmul(p[:, 3 * hidden :], p[:, 2 * hidden : 3 * hidden], dt))
    s1, s2 = sig[:, :hidden], sig[:, hidden:]
    if mode is CfCMode.no_gate:
        h = torch.addcmul(2 * scale * s1 - scale, s, 2 * scale * s2 - scale, out=out)
    else:
        h = torch.lerp(s1, s2, s, out=out).mul_(2 * scale).sub_(scale)
    return h, (sig, s)


def update_step_grad(
    mode: CfCMode,
    head: tuple[float, float],
    dh: torch.Tensor,
    tape: Tape,
    dt: torch.Tensor,
    A: torch.Tensor | None,
    w_tau: torch.Tensor | None,
    out: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Gradient of ``p`` (and, for Cf-S, of ``A`` and ``w_tau``) from that of ``h``; ``p``'s
    is written to ``out`` (``[B,4H]``, Cf-S ``[B,H]``)."""
    if mode is CfCMode.pure:
        p, e = tape
        dp = torch.mul(-dh * A * e, 1 - dt * p.abs(), out=out)
        dA = (dh * (1 - e * p)).sum(0, keepdim=True)
        dw = (dh * A * e * p * dt).sum(0, keepdim=True) * w_tau.sign()
        return dp, dA, dw
    scale, slope = head
    sig, s = tape
    hidden = s.shape[1]
    s1, s2 = sig[:, :hidden], sig[:, hidden:]
    d_f1, d_f2, d_ta, d_tb = out.split(hidden, dim=1)  # written in place: no concatenation
    torch.mul(dh, s, out=d_f2)  # gradient of g(f2), g(f) = a·tanh(b·f)
    if mode is CfCMode.no_gate:  # h = g(f1) + s·g(f2)
        d_f1.copy_(dh)
        d_s = (2 * scale * s2 - scale).mul_(dh)
    else:  # h = g(f1)·(1 − s) + s·g(f2)
        torch.sub(dh, d_f2, out=d_f1)
        d_s = torch.sub(s2, s1).mul_(dh).mul_(2 * scale)
    out[:, : 2 * hidden].mul_(
        4 * scale * slope * torch.addcmul(sig, sig, sig, value=-1)
    )  # g'(f) = 4ab·σ(2b·f)(1 − σ(2b·f))
    torch.mul(d_s, torch.addcmul(s, s, s, value=-1), out=d_tb)  # σ' = σ(1 − σ)
    torch.mul(d_tb, dt, out=d_ta)
    return out, None, None


class Recurrence(torch.autograd.Function):
    """The CfC time loop as one autograd node, with backpropagation through time by hand.

    Inputs (time-major): ``x_proj [T,B,·]``, the inputs' share of the first layer (bias
    included); ``lstm_proj [T,B,4H]``, the LSTM's ``input_map(x)`` (or None); ``dt [T,B,1]``;
    then the recurrent weights: ``w_rec`` (the state's share of the first layer), the heads
    (None when the first layer is the heads), ``A, w_tau`` (Cf-S), the LSTM's recurrent
    matrix, and weight and bias of every backbone layer after the first. Returns ``h [T,B,H]``.
    ``keep`` False (inference) skips storing what the backward pass needs.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        model: CfC,
        keep: bool,
        x_proj: torch.Tensor,
        lstm_proj: torch.Tensor | None,
        dt: torch.Tensor,
        w_rec: torch.Tensor,
        heads_w: torch.Tensor | None,
        heads_b: torch.Tensor | None,
        A: torch.Tensor | None,
        w_tau: torch.Tensor | None,
        lstm_rec: torch.Tensor | None,
        *hidden: torch.Tensor,
    ) -> torch.Tensor:
        # Transposed once here, not at every step.
        layers = [(w.t(), b) for w, b in zip(hidden[0::2], hidden[1::2], strict=True)]
        w_rec_t = w_rec.t()
        heads_t = None if heads_w is None else heads_w.t()
        lstm_rec_t = None if lstm_rec is None else lstm_rec.t()
        act = ACTIVATION_FNS[model.activation]
        drop = model.dropout if model.training else 0.0
        steps, batch = x_proj.shape[:2]
        hs = x_proj.new_empty(steps, batch, w_rec.shape[1])  # each step writes its h here
        h = x_proj.new_zeros(batch, w_rec.shape[1])
        c = torch.zeros_like(h)
        tapes = []
        for t in range(steps):
            lstm_tape = None
            if lstm_rec is not None:
                h, c, lstm_tape = lstm_step(lstm_proj[t], h, c, lstm_rec_t, model.lstm.forget_bias)
            p = torch.addmm(x_proj[t], h, w_rec_t)
            layer_tapes = []
            if heads_w is not None:
                a = p
                for k in range(len(layers) + 1):
                    if k:
                        w_t, b = layers[k - 1]
                        a = torch.addmm(b, layer_tapes[-1][3], w_t)
                    y = act(a)
                    # Dropout follows the second and later layers (as ncps; same random draws),
                    # and the first one too with dropout_first_layer.
                    dropped = drop and (k or model.dropout_first_layer)
                    mask = F.dropout(torch.ones_like(y), drop) if dropped else None
                    layer_tapes.append((a, y, mask, y if mask is None else y * mask))
                p = torch.addmm(heads_b, layer_tapes[-1][3], heads_t)
            h_in = h
            h, update_tape = update_step(model.mode, model.head_shape, p, dt[t], A, w_tau, hs[t])
            if keep:
                # A step's incoming state is the previous output, hs[t - 1], read back from the
                # saved output (autograd refuses saved views of it); the LSTM's is fresh.
                h_lstm = h_in if lstm_rec is not None else None
                tapes.append((h_lstm, lstm_tape, layer_tapes, update_tape))
        if keep:
            # Saved as autograd saves (freed after the backward pass unless retain_graph).
            leaves, ctx.tape_layout = tree_flatten(tapes)
            ctx.model = model
            ctx.save_for_backward(dt, w_rec, heads_w, A, w_tau, lstm_rec, hs, *hidden, *leaves)
        return hs

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, d_hs: torch.Tensor) -> tuple:
        dt, w_rec, heads_w, A, w_tau, lstm_rec, hs, *rest = ctx.saved_tensors
        model = ctx.model
        n_hidden = 2 * (len(model.backbone) - 1) if heads_w is not None else 0
        hidden, tapes = rest[:n_hidden], tree_unflatten(rest[n_hidden:], ctx.tape_layout)
        act_grad = ACTIVATION_GRADS[model.activation]
        hidden_w = hidden[0::2]
        batch = d_hs.shape[1]

        def zeros_t(w):  # a weight's gradient, accumulated as [in, out] (faster products)
            return None if w is None else w.new_zeros(w.shape[1], w.shape[0])

        g_rec, g_heads, g_lstm = zeros_t(w_rec), zeros_t(heads_w), zeros_t(lstm_rec)
        g_heads_b = None if heads_w is None else d_hs.new_zeros(batch, heads_w.shape[0])
        g_hidden = [(zeros_t(w), d_hs.new_zeros(batch, w.shape[0])) for w in hidden_w]
        g_A = g_w_tau = None
        if A is not None:
            g_A, g_w_tau = torch.zeros_like(A), torch.zeros_like(w_tau)
        # Gradients of the inputs' shares, [T,B,·], filled step by step (no stack at the end).
        d_x = d_hs.new_empty(*d_hs.shape[:2], w_rec.shape[0])
        d_lstm_x = None if lstm_rec is None else d_hs.new_empty(*d_hs.shape[:2], lstm_rec.shape[0])
        dh = torch.zeros_like(d_hs[0])
        dc = torch.zeros_like(dh)
        h0 = torch.zeros_like(dh)
        dp_heads = None if heads_w is None else dh.new_empty(batch, heads_w.shape[0])
        for t in reversed(range(len(tapes))):
            h_lstm, lstm_tape, layer_tapes, update_tape = tapes[t]
            h_prev = hs[t - 1] if t else h0
            h_in = h_prev if h_lstm is None else h_lstm
            dh.add_(d_hs[t])
            # The heads' gradient is used up within the step, so one buffer serves them all.
            out = dp_heads if heads_w is not None else d_x[t]
            dp, dA, dw = update_step_grad(
                model.mode, model.head_shape, dh, update_tape, dt[t], A, w_tau, out
            )
            if dA is not None:
                g_A += dA
                g_w_tau += dw
            if heads_w is not None:
                g_heads.addmm_(layer_tapes[-1][3].t(), dp)
                g_heads_b += dp
                dz = dp @ heads_w
                for k in reversed(range(len(layer_tapes))):
                    a, y, mask, _ = layer_tapes[k]
                    # The first layer's gradient goes straight to its slot in d_x.
                    slot = d_x[t] if k == 0 else torch.empty_like(a)
                    dp = act_grad(dz if mask is None else dz * mask, a, y, slot)
                    if k:
                        g_hidden[k - 1][0].addmm_(layer_tapes[k - 1][3].t(), dp)
                        g_hidden[k - 1][1].add_(dp)
                        dz = dp @ hidden_w[k - 1]
            # dp, the first layer's pre-activation gradient, was written into d_x[t]
            g_rec.addmm_(h_in.t(), dp)
            dh = dp @ w_rec
            if lstm_tape is not None:
                d_gates, dc = lstm_step_grad(dh, dc, lstm_tape, d_lstm_x[t])
                g_lstm.addmm_(h_prev.t(), d_gates)
                dh = d_gates @ lstm_rec
        d_hidden = [g for gw, gb in g_hidden for g in (gw.t(), gb.sum(0))]
        return (
            None,
            None,
            d_x,
            d_lstm_x,
            None,
            g_rec.t(),
            None if heads_w is None else g_heads.t(),
            None if heads_w is None else g_heads_b.sum(0),
            g_A,
            g_w_tau,
            None if lstm_rec is None else g_lstm.t(),
            *d_hidden,
        )
