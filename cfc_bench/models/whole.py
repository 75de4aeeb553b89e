"""Models that read a whole sequence at once (attention, interpolation, set functions).

Such a model maps the valid steps of a sequence, as observations at absolute times, to one
feature vector ``summary(x, dt, mask) -> [B,H]``; the last-valid output is its readout. It has
no recurrence over the steps, so its output at step ``k`` is *defined* as its output on the
prefix ``0..k``: ``states[:, k] = summary(x, dt, mask ∧ (step ≤ k))``. That keeps the model
contract (``cfc_bench/models/contract.py``) literally: per-step outputs are causal, and the
output at each sequence's last valid step is the whole-sequence output. The cost is ``T``
whole-sequence passes, so per-step tasks are only practical for short sequences; a model with
a cheaper causal per-step form overrides ``states``.

Observation times: a task gives elapsed times ``dt``; the absolute time of step ``k`` is
``t_k = Σ_{j≤k} |dt_j|`` over valid steps (:func:`observation_times`). Under the default
protocols ``dt ≥ 0`` is the true gap and ``t_k`` the true time since the sequence began.
Under PhysioNet's ``protocol=paper``, whose ``dt_k`` is the previous step's gap negated
(``cfc_bench/tasks/physionet.py``, quirk 3), the sum gives ``t_k = t_{k−1}``: each step sits at
the previous step's time (steps 0 and 1 both at 0), the time input that protocol hands every
model; the true time of the last step cannot be recovered from it causally.
Under person activity's ``protocol=paper`` a reading filed before an earlier tick has a negative
elapsed time (``cfc_bench/tasks/person_activity.py``, quirk 4); its magnitude is counted
forward, so times never decrease.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from cfc_bench.models.base import SequenceIO, SequenceModel


def value_channels(io: SequenceIO, model: str) -> int:
    """``D``, the channels that hold values: half the inputs with ``[values ; observed-mask]``
    inputs (a ValueError if the input size is odd), else all of them."""
    if not io.values_with_mask:
        return io.input_size
    if io.input_size % 2:
        raise ValueError(
            f"{model} reads x as [values ; observed-mask] halves, but the input size "
            f"{io.input_size} is odd: the task must give one mask column per value"
        )
    return io.input_size // 2


def observation_times(dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B,T]`` absolute times ``t_k = Σ_{j≤k} |dt_j|`` over valid steps."""
    return torch.where(mask, dt.abs(), 0.0).cumsum(dim=1)


def observed_channels(x: torch.Tensor, mask: torch.Tensor, values_with_mask: bool) -> torch.Tensor:
    """``[B,T,I]`` bool: where each input channel holds an observation.

    With ``[values ; observed-mask]`` inputs both halves count as observed where the mask half
    is set (the mTAN and IP-Nets references read the mask channel under the same mask);
    otherwise every channel of a valid step is observed.
    """
    valid = mask.unsqueeze(-1)
    if not values_with_mask:
        return valid.expand_as(x)
    flags = x[..., x.shape[-1] // 2 :] > 0.5
    return torch.cat([flags, flags], dim=-1) & valid


class ObservationSet(NamedTuple):
    """Each sequence's observations as a padded set ``[B,N]`` (``N`` the most in the batch),
    in step order: time, channel index, value, whether the slot holds one, and its step."""

    time: torch.Tensor
    channel: torch.Tensor
    value: torch.Tensor
    valid: torch.Tensor
    step: torch.Tensor


def observation_set(x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor, values_with_mask: bool):
    """The observed values of ``x`` as an :class:`ObservationSet` over ``D`` channels (the value
    half with ``[values ; observed-mask]`` inputs, else every input at every valid step)."""
    if values_with_mask:
        d = x.shape[-1] // 2
        values, observed = x[..., :d], (x[..., d:] > 0.5) & mask.unsqueeze(-1)
    else:
        d = x.shape[-1]
        values, observed = x, mask.unsqueeze(-1).expand_as(x)
    flat = observed.flatten(1)
    count = flat.sum(dim=1)
    # the most observations in the batch; a meta tensor (device checks) holds no data: all slots
    n = flat.shape[1] if flat.is_meta else max(int(count.max()), 1)
    # a stable sort puts each sequence's observed entries first, in (step, channel) order
    index = torch.sort((~flat).to(torch.int8), dim=1, stable=True).indices[:, :n]
    valid = torch.arange(n, device=x.device) < count.unsqueeze(1)
    step = torch.div(index, d, rounding_mode="floor")
    time = observation_times(dt, mask).gather(1, step)
    value = torch.where(valid, values.flatten(1).gather(1, index), 0.0)
    return ObservationSet(time, index % d, value, valid, step), d


class WholeSequenceModel(SequenceModel):
    """A model whose per-step output is its whole-sequence output on each prefix."""

    def summary(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Features ``[B,H]`` of the valid steps of each sequence (padding ignored exactly)."""
        raise NotImplementedError

    def last_states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.summary(x, dt, mask)

    def states(self, x: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(x.shape[1], device=x.device)
        prefixes = [self.summary(x, dt, mask & (steps <= k)) for k in range(x.shape[1])]
        return torch.stack(prefixes, dim=1)


def masked_attention(
    scores: torch.Tensor, key_mask: torch.Tensor, values: torch.Tensor, observed: torch.Tensor
) -> torch.Tensor:
    """Per-channel softmax average ``[B,h,R,C]`` of ``values [B,T,C]`` over the keys ``T``.

    ``a_rc = Σ_j e_rj m_jc v_jc / Σ_j e_rj m_jc`` with ``e_rj = exp(s_rj − M_r)`` for the
    scores ``s [B,h,R,T]`` of the keys that ``key_mask`` (broadcast to ``s``) allows,
    ``m = observed [B,T,C]``, and 0 for a channel with no allowed observation. This is the
    softmax over each channel's observed keys (the references' ``masked_fill(mask == 0, -1e9)``
    then softmax) as two matrix products; the common shift ``M_r`` (the best allowed key of
    query ``r``, no gradient) keeps it exact unless all of a channel's keys score more than
    about 87 (float32) below that key, where ``exp`` underflows and the channel reads as
    unobserved.
    """
    masked = torch.where(key_mask, scores, -torch.inf)
    shift = masked.amax(dim=-1, keepdim=True).detach()
    e = torch.exp(masked - torch.where(torch.isfinite(shift), shift, 0.0))
    observed = observed.unsqueeze(1)
    num = e @ torch.where(observed, values.unsqueeze(1), 0.0)
    den = e @ observed.to(e.dtype)
    seen = den > 0
    return torch.where(seen, num / torch.where(seen, den, 1.0), 0.0)
