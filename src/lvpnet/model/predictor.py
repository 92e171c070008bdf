"""Probability prediction network (integer-exact) with optional 2x2 sub-image autoregression.

Resolution: the sub-image grid (``Hp/f x Wp/f``; f = 2 by default, f = 1 is the
one-pass mode). Inputs of step ``k`` (sub-image ``k`` in ``prep.ORDERS[f]``):

* latent features (``up_channels`` 7-bit channels from the upsampling layer);
* for f = 2: the already decoded sub-images ``0..k-1`` as 12-bit context values
  ``floor(v * 2**12 / 2**B)`` (channels ``>= k`` are zero) through their own 3x3
  "context stem" conv (27 * 4095 * 127 + 2**18 < 2**24), plus 3 availability
  masks (127 where available).

A trunk of 3x3 convs (7-bit ReLU-clamped activations) ends in a raw 1x1 head with
``P = 2 + 9 * nctx`` channels per step: ``m`` (location term), ``s`` (scale) and
``9 * nctx`` non-negative neighbour weights ``a``. The head's integers become
(``head_params``):

    s_idx = clamp(clamp(floor(s_raw / 2**(fw+2)) + S_OFF, 0, 127) - L * (16 - B), 0, S-1)
    wavg  = round(sum_j (a_j+1) n_j / sum_j (a_j+1))      over the 3x3 neighbours n_j of
                                                          every available context sub-image
    base  = wavg          (steps >= 1)      or 2**(B-1) (step 0)
    mu    = clamp(base + floor(m_raw * 2**B / 2**(fw+4)), 0, R)

all in int64 (exact on any device). The neighbour values ``n_j`` are the exact
decoded values (up to 16 bits), so the location keeps full precision although
hidden activations are 7-bit.

Head version 2 (``ModelConfig.head = 2``; version 1 stays decodable as above)
changes two things, both found on the v1 checkpoint's val images:

* ``mu`` rounds the fine correction, ``floor((m_raw * 2**B + 2**(fw+3)) / 2**(fw+4))``:
  v1 floors it, so a correction of -0.01 moved an 8-bit location by a whole level,
  which the continuous training relaxation never saw (flat areas cost 1-5 bits);
  on steps >= 1 the correction is in units of the neighbour activity ``act``
  (below), ``round(m_raw * act / 2**(fw+4+8))``, so it is exactly 0 where the
  neighbours agree and the weighted average stands (a fixed-unit correction
  leaked into flat areas and cost ~9 bits per pixel there at the sharpest scale);
* steps >= 1 start from a scale measured on the exact decoded neighbours:
  ``act = sum (a_j+1) |n_j - wavg| / sum (a_j+1)`` (8 fraction bits),
  ``s_base = #{s : thr[s] <= act} - 1`` (``tables.build_scale_thresholds``,
  stored with the decoder) and ``s_idx = clamp(s_base + clamp(floor(s_raw /
  2**(fw+2)), -64, 63), 0, S-1)``: a flat neighbourhood gives the sharpest table at
  once, and the network only learns a correction in quarter octaves.

Head version 3 (``ModelConfig.head = 3``) adds a signed linear term over the
``LIN_TERMS`` decoded pixels nearest to each pixel (``lin_index``; step 0 by rows:
its 3 row-above neighbours): ``c_t = clamp(round(l_raw_t), +-LIN_CLAMP)`` and

    mu = clamp(wavg + d_act + round(sum_t c_t (n_t - wavg) / 2**(fw+4)), 0, R)

The convex weighted average cannot extrapolate; measured on val, the fixed
predictor ``(N+S+W+E)/2 - (NW+NE+SW+SE)/4`` (negative weights) leaves 2.08 bits
of residual entropy on the CT against 3.61 for the mean of the four nearest, and
3.83 against 4.79 on a shoulder MR. The terms start at 0 (a head-2 model is a
head-3 model with these weights zero, ``upgrade_state``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .head_kernel import fused_params
from .intnet import AMAX, IntConv2d, int_conv
from .prep import CTX_BITS, ORDERS
from .tables import ACT_FRAC

S_OFF = 56  # scale-index offset of the s channel (initial scale)
HEAD_FW = 10  # weight fraction bits of the head (finer location resolution)
LIN_TERMS = 12  # head 3: signed linear terms over the nearest decoded pixels
LIN_CLAMP = 2 << (HEAD_FW + 4)  # |c_t| <= 2 (units 2**-(fw+4))


class Predictor(nn.Module):
    def __init__(
        self,
        up_channels: int,
        f: int,
        width: int = 48,
        ctx_width: int = 32,
        n_layers: int = 3,
        ctx_bits: int = CTX_BITS,
        step0_rows: bool = False,
        head: int = 1,
    ):
        super().__init__()
        self.f = f
        self.steps = f * f
        self.nctx = self.steps - 1
        self.nlin = LIN_TERMS if head >= 3 else 0
        self.P = 2 + max(9 * self.nctx, 3 if step0_rows else 0) + self.nlin
        cin = up_channels
        if self.nctx:
            self.ctx = IntConv2d(self.nctx, ctx_width, 3, in_max=(1 << ctx_bits) - 1, f_in=ctx_bits, f_out=4)
            cin += ctx_width + self.nctx
        layers = [IntConv2d(cin, width, 3)]
        layers += [IntConv2d(width, width, 3) for _ in range(n_layers - 1)]
        layers += [IntConv2d(width, width, 1)]
        self.layers = nn.ModuleList(layers)
        self.head = IntConv2d(width, self.steps * self.P, 1, raw=True, fw=HEAD_FW)
        with torch.no_grad():
            self.head.weight.mul_(0.03 / self.head.weight.std())
        if self.nctx or step0_rows:
            self.head.set_bias_int(neighbour_weight_init(f, self.P, step0_rows) * 2**HEAD_FW)
        if self.nlin:  # the linear terms start at exactly 0 (the head-2 predictor)
            with torch.no_grad():
                self.head.weight.view(self.steps, self.P, -1)[:, -self.nlin :] = 0.0

    def hidden(self, feats: torch.Tensor, ctx_u: torch.Tensor | None, avail: torch.Tensor | None) -> torch.Tensor:
        x = feats
        if self.nctx:
            c = self.ctx(ctx_u)
            m = (avail.to(feats.dtype) * AMAX)[:, :, None, None].expand(-1, -1, *feats.shape[-2:])
            x = torch.cat([feats, c, m], dim=1)
        for layer in self.layers:
            x = layer(x)
        return x

    def step_head(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Raw head outputs of step ``k`` only (a 1x1 conv's outputs are independent)."""
        return self.head(x, out_slice=slice(k * self.P, (k + 1) * self.P))

    def export(self) -> dict:
        d = {"layers": [layer.export() for layer in self.layers], "head": self.head.export()}
        if self.nctx:
            d["ctx"] = self.ctx.export()
        return d


def neighbour_weight_init(f: int, P: int, step0_rows: bool = False, a0: float = 64.0) -> torch.Tensor:
    """Initial neighbour weights ``a_j ~ a0 / distance**2`` (head bias, per step): training
    starts from a distance-weighted interpolator instead of a random one."""
    order = ORDERS[f]
    bias = torch.zeros(len(order) * P)
    if step0_rows:  # step 0: the row above, columns c-1, c, c+1, one sub-image row (f pixels) up
        for t, dx in enumerate((-1, 0, 1)):
            bias[2 + t] = round(4 * a0 / (f * f * (1 + dx * dx)))
    for k, (a, b) in enumerate(order):
        for j, (c, d) in enumerate(order[:k]):
            for t in range(9):  # F.unfold order: kernel rows, then columns
                dy, dx = f * (t // 3 - 1) + c - a, f * (t % 3 - 1) + d - b
                bias[k * P + 2 + 9 * j + t] = min(127.0, round(a0 / (dy * dy + dx * dx)))
    return bias


def lin_index(f: int, step0_rows: bool, n: int = LIN_TERMS) -> tuple[torch.Tensor, torch.Tensor]:
    """Head 3: per step, the neighbour channels (``neighbours`` layout; step 0 by rows:
    ``row_neighbours``) of the ``n`` decoded pixels nearest in the full image, ties by
    channel -> (steps, n) int64 indices and (steps, n) bool "term in use"."""
    order = ORDERS[f]
    idx = torch.zeros((len(order), n), dtype=torch.int64)
    ok = torch.zeros((len(order), n), dtype=torch.bool)
    for k, (a, b) in enumerate(order):
        if k == 0:
            near = [0, 1, 2] if step0_rows else []
        else:
            d = []
            for j, (c, e) in enumerate(order[:k]):
                for t in range(9):
                    dy, dx = f * (t // 3 - 1) + c - a, f * (t % 3 - 1) + e - b
                    d.append((dy * dy + dx * dx, 9 * j + t))
            near = [ch for _, ch in sorted(d)[:n]]
        idx[k, : len(near)] = torch.tensor(near, dtype=torch.int64)
        ok[k, : len(near)] = True
    return idx, ok


def upgrade_state(state: dict, steps: int, P_old: int, nlin: int) -> dict:
    """A head-2 state dict -> head 3: every step's head block gains ``nlin`` zero outputs."""
    out = dict(state)
    for name in ("predictor.head.weight", "predictor.head.bias"):
        t = state[name]
        blocks = t.view(steps, P_old, *t.shape[1:])
        pad = torch.zeros((steps, nlin, *t.shape[1:]), dtype=t.dtype)
        out[name] = torch.cat([blocks, pad], 1).reshape(steps * (P_old + nlin), *t.shape[1:])
    return out


def step_spec(spec: dict, k: int, P: int) -> dict:
    """The exported predictor with the head cut to step ``k``'s ``P`` outputs."""
    out = dict(spec)
    head = dict(spec["head"])
    head["weight"] = head["weight"][k * P : (k + 1) * P].contiguous()
    head["bias"] = head["bias"][k * P : (k + 1) * P].contiguous()
    out["head"] = head
    return out


def trunk_int(spec: dict, feats, ctx_u, avail, impl: str = "conv"):
    x = feats
    if "ctx" in spec:
        c = int_conv(ctx_u, spec["ctx"], impl)
        m = (avail.to(feats.dtype) * AMAX)[:, :, None, None].expand(-1, -1, *feats.shape[-2:])
        x = torch.cat([feats, c, m], dim=1)
    for layer in spec["layers"]:
        x = int_conv(x, layer, impl)
    return int_conv(x, spec["head"], impl)


def neighbours(ctx_v: torch.Tensor) -> torch.Tensor:
    """(N, nctx, h, w) exact values -> (N, nctx*9, h, w), 3x3 neighbourhoods, edge-replicated."""
    n, c, h, w = ctx_v.shape
    x = F.pad(ctx_v.to(torch.float32), (1, 1, 1, 1), mode="replicate")  # values < 2**17: exact
    return F.unfold(x, 3).view(n, c * 9, h, w)


def row_neighbours(up: torch.Tensor, r0: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 0 in row order: ``up`` (N, n, w), the values of the rows above rows ``r0..r0+n-1``
    -> (N, 3, n, w) neighbours at columns c-1, c, c+1 (edge-replicated) and (N, n, w) bool
    "has a row above" (row >= 1).

    Row ``r``'s outputs depend only on row ``r - 1``, so the decoder computes them row by row
    from what it has decoded and gets the very integers the encoder computed for all rows."""
    n, h, w = up.shape
    left = torch.cat([up[:, :, :1], up[:, :, :-1]], 2)
    right = torch.cat([up[:, :, 1:], up[:, :, -1:]], 2)
    has = (torch.arange(r0, r0 + h, device=up.device) > 0).view(1, h, 1).expand(n, h, w)
    return torch.stack([left, up, right], 1), has


def rows_above(sub: torch.Tensor) -> torch.Tensor:
    """(..., h, w) -> the row above every row (row 0 gets itself; it has none and is not used)."""
    return torch.cat([sub[..., :1, :], sub[..., :-1, :]], -2)


def up_neighbours(sub: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``row_neighbours`` of a whole step-0 sub-image (N, h, w) whose values are all known."""
    return row_neighbours(rows_above(sub), 0)


def head_params(
    raw: torch.Tensor,
    ctx_v: torch.Tensor | None,
    avail: torch.Tensor | None,
    first: torch.Tensor,
    R: torch.Tensor,
    B: torch.Tensor,
    *,
    n_scales: int,
    per_octave: int,
    soft: bool = False,
    head: int = 1,
    thr: torch.Tensor | None = None,
    nb: torch.Tensor | None = None,
    nb_has: torch.Tensor | None = None,
    lin: tuple[torch.Tensor, torch.Tensor] | None = None,
):
    """Raw head output (N, P, h, w) of one step -> integer (mu, s_idx) [+ float relaxations].

    ``first`` (N,) bool marks step 0 (no context); ``R``, ``B`` (N,) int64.
    ``ctx_v`` may hold only the first ``n`` context sub-images (then ``avail`` has ``n``
    columns): the weights of the others are never read. ``head`` is the head version
    (module docstring); version 2 needs the scale thresholds ``thr``.
    ``nb`` (N, n, h, w) exact neighbour values with ``nb_has`` (N, h, w) bool replace
    ``ctx_v``: step 0's row above (``up_neighbours``), weights ``raw[:, 2:2+n]``.
    ``lin`` (head 3): (N, L) neighbour channel indices and (N, L) bool of the signed
    linear terms (``lin_index`` rows), read from the last L raw channels.
    With ``soft=True`` also returns (mu_soft, s_soft) for the training relaxation.
    """
    fw = HEAD_FW
    dev = raw.device
    N = raw.shape[0]
    if head >= 3 and lin is None and (nb is not None or ctx_v is not None):
        raise ValueError("head version 3 needs the linear-term channels (lin=, predictor.lin_index)")
    if not soft:  # the codec's CPU case as one fused loop (model.head_kernel); None: not that case
        fused = fused_params(raw, ctx_v, avail, first, R, B, head=head, thr=thr, lin=lin, soft=soft, nb=nb,
                             nb_has=nb_has, n_scales=n_scales, fw=fw, act_frac=ACT_FRAC, amax=AMAX,
                             lin_clamp=LIN_CLAMP)
        if fused is not None:
            return fused
    if not raw.is_floating_point():  # the int8 trunk's int32 integers (exact in float32: below 2**24)
        raw = raw.to(torch.float32)
    R = R.to(dev).long().view(N, 1, 1)
    B = B.to(dev).long().view(N, 1, 1)
    m_int = torch.round(raw[:, 0].detach()).long()
    s_raw = torch.floor(raw[:, 1].detach() * 2.0 ** -(fw + 2))  # quarter octaves
    s_net = torch.clamp(s_raw + S_OFF, 0, AMAX).long()
    s_idx = torch.clamp(s_net - per_octave * (16 - B), 0, n_scales - 1)
    if head >= 2:
        delta = ((m_int << B) + (1 << (fw + 3))) >> (fw + 4)
    else:
        delta = (m_int << B) >> (fw + 4)
    half = (torch.ones_like(B) << B) >> 1
    base = half.expand_as(delta)
    s_base = None
    if nb is not None:
        nb = nb.to(dev)
        wmask = None
    elif ctx_v is not None and ctx_v.shape[1] > 0:
        nb = neighbours(ctx_v)
        # every listed context sub-image available (the decoder passes only those): no mask
        wmask = None if bool(avail.all()) else avail.to(dev).double().repeat_interleave(9, dim=1)[:, :, None, None]
    if nb is not None:
        # Integer sums computed in float64, which is exact here and 5x faster than int64 on the CPU:
        # weights <= 128, values < 2**17, at most 135 terms, so every sum stays far below 2**53.
        nw = nb.shape[1]
        a_int = torch.clamp(torch.floor(raw[:, 2 : 2 + nw].detach() * 2.0**-fw), 0, AMAX)  # exact in raw's dtype
        wts = (a_int + 1.0).double()
        if wmask is not None:
            wts = wts * wmask
        A = wts.sum(1).long()
        nbd = nb.double()
        num = (wts * nbd).sum(1).long()
        wavg = torch.div(num + (A >> 1), A.clamp_min(1), rounding_mode="floor")
        if nb_has is not None:
            has = (A > 0) & nb_has.to(dev)
        else:
            has = (A > 0) & (~first.to(dev)).view(N, 1, 1)
        base = torch.where(has, wavg, base)
        if head >= 2:
            act = (wts * (nbd - wavg[:, None].double()).abs_()).sum(1).long()
            act = torch.div(act << ACT_FRAC, A.clamp_min(1), rounding_mode="floor")
            s_base = torch.searchsorted(thr.to(dev), act.contiguous(), right=True) - 1
            s_corr = torch.clamp(s_raw, -64, 63).long()
            s_idx = torch.where(has, torch.clamp(s_base + s_corr, 0, n_scales - 1), s_idx)
            # the correction is in units of the activity: exactly 0 where the neighbours agree
            d_act = (m_int * act + (1 << (fw + 3 + ACT_FRAC))) >> (fw + 4 + ACT_FRAC)
            if head >= 3 and lin is not None:
                d_act = d_act + _lin_term(raw, nbd, wavg, lin, fw)
            delta = torch.where(has, d_act, delta)
    mu = torch.minimum(torch.clamp(base + delta, min=0), R.expand_as(delta))
    if not soft:
        return mu, s_idx
    # float relaxations with gradients (training only)
    Bf = B.to(raw.dtype)
    # clamps with straight-through gradients: a scale stuck at a bound must still feel the loss
    s_soft = _ste_clamp(raw[:, 1] * 2.0 ** -(fw + 2) + S_OFF, 0, AMAX) - per_octave * (16 - Bf)
    if s_base is not None:
        s_ctx = s_base.to(raw.dtype) + _ste_clamp(raw[:, 1] * 2.0 ** -(fw + 2), -64, 63)
        s_soft = torch.where(has, s_ctx, s_soft)
    s_soft = _ste_clamp(s_soft, 0, n_scales - 1)
    base_f = base.to(raw.dtype)
    if nb is not None:
        a_f = torch.clamp(raw[:, 2 : 2 + nw] * 2.0**-fw, 0, AMAX)
        wf = a_f + 1.0 if wmask is None else (a_f + 1.0) * wmask.to(raw.dtype)
        wavg_f = (wf * nb.to(raw.dtype)).sum(1) / wf.sum(1).clamp_min(1e-6)
        base_f = torch.where(has, wavg_f, base_f)
    m_scale = torch.exp2(Bf - (fw + 4)).expand_as(base_f)
    if s_base is not None:
        m_scale = torch.where(has, act.to(raw.dtype) * 2.0 ** -(fw + 4 + ACT_FRAC), m_scale)
    mu_soft = base_f + raw[:, 0] * m_scale
    if s_base is not None and head >= 3 and lin is not None:
        g, ok = _lin_neighbours(nb.to(raw.dtype), lin)
        c_f = _ste_clamp(raw[:, -g.shape[1] :] * 2.0 ** -(fw + 4), -2.0, 2.0) * ok
        mu_soft = mu_soft + torch.where(has, (c_f * (g - base_f[:, None])).sum(1), torch.zeros_like(mu_soft))
    return mu, s_idx, mu_soft, s_soft


def _lin_neighbours(nb: torch.Tensor, lin) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear terms' neighbour values (N, L, h, w) picked from ``nb`` by ``lin`` (indices, in
    use), and the in-use mask (N, L, 1, 1) in ``nb``'s dtype."""
    idx, ok = (t.to(nb.device) for t in lin)
    g = torch.gather(nb, 1, idx[:, :, None, None].expand(-1, -1, *nb.shape[-2:]))
    return g, ok[:, :, None, None].to(nb.dtype)


def _lin_term(raw, nbd, wavg, lin, fw: int) -> torch.Tensor:
    """round(sum_t c_t (n_t - wavg) / 2**(fw+4)), exact: |c_t| <= 2**15, |n_t - wavg| < 2**17,
    12 terms, so every partial sum stays below 2**36, far inside float64's 2**53."""
    g, ok = _lin_neighbours(nbd, lin)
    c = torch.clamp(torch.round(raw[:, -g.shape[1] :].detach()), -LIN_CLAMP, LIN_CLAMP).double() * ok
    acc = (c * (g - wavg[:, None].double())).sum(1)
    return torch.floor((acc + 2.0 ** (fw + 3)) * 2.0 ** -(fw + 4)).long()


def _ste_clamp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return x + (torch.clamp(x, lo, hi) - x).detach()
