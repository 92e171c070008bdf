"""Train LVPNet: ``python -m lvpnet.train --config configs/lvpnet-v1.json [--data DIR] [--device cpu|cuda]
[--minutes M] [--out checkpoints/NAME] [--resume CKPT]``.

* Data: a prepared folder (``index.json``, from ``scripts/prepare_train_data.py``) or
  a corpus folder with ``manifest.json`` (default ``../shared/data`` beside the
  checkout). Fits on ``train`` only; evaluates every ``val`` image whole, in order,
  with the exact integer decoder; keeps the best checkpoint by total val bits.
* Grey arrays: every 2-D slice is an image. RGB: each frame becomes three grey
  planes G, R-G, B-G (reversible colour transform, ``model.prep.rgb_to_planes``).
* Writes ``best.pt``, ``log.json`` and ``model_card.md`` into ``--out``.

Needs only numpy and torch (runs on a bare GPU machine); seeded.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lvpnet.coding.estimate import slice_bits
from lvpnet.model.intnet import ExactMode
from lvpnet.model.lvpnet import IntegerDecoder, LVPNet, ModelConfig, save_checkpoint
from lvpnet.model.prep import bit_depth, grey_slices, padded_size, polyphase_pad, slice_params

DEFAULT_TRAIN = {
    "batch": 16,
    "crop": 256,
    "lr": 1e-3,
    "lr_min": 5e-5,
    "warmup_steps": 100,
    "grad_clip": 2.0,
    "val_every_minutes": 1.5,
    "log_every": 25,
    "sample_power": 0.5,
    "seed": 0,
    # anti-collapse switches for the latent (docs/MODEL.md, "Latent collapse: measured, session 12");
    # both off by default, so the shipped recipe is unchanged
    "free_bits": 0.0,  # bits per channel per 32x32 block the loss does not charge (0: every bit charged)
    "reopen_latent": False,  # after loading weights: a new encoder head whose tanh is not saturated
    # QCM and latent range switches (docs/MODEL.md, "Latent and QCM, session 13"); off by default
    "reopen_qcm": False,  # after loading weights: QCM layers re-initialised inside their ranges, clamp opened
    "range_bits": 0.0,  # bits per unit of the encoder head's pre-tanh output beyond the coded range
    "range_margin": 0.0,  # the hinge's lower end: y >= (-zmax + range_margin) * q_step (0.5: the bin's middle)
    "rate_centred": False,  # the rate's gradient inside a bin from the neighbour on y's side (train.centred_rate)
    # the weight of the pixel bits of the steps on the stride-2 lattice (steps 0-3 of 4x4 sub-images):
    # on val the codec hands that lattice to JPEG-XL on every CT, MG and ultrasound plane (bitstream 7),
    # so the network's work there is mostly never used; below 1 the shared trunk leans to the steps it codes
    "lattice_weight": 1.0,
    # > 0: each crop's pixel bits weighed by 1 / (its bits per pixel + this floor), so the loss follows
    # the crops' relative gains (the product is judged per image against a classical codec) instead of
    # their bits, which the noisiest crops dominate; 0: every bit counts the same (the shipped recipe)
    "crop_floor_bpp": 0.0,
}


def crop_weights(crop_bits: torch.Tensor, crop_pixels: torch.Tensor, floor: float) -> torch.Tensor:
    """Per crop, ``1 / (bits per pixel + floor)`` (no gradient), scaled so that their mean over the
    batch's real pixels is 1: the weighted loss keeps the scale of bits per pixel, and its gradient is
    that of ``sum(pixels * log(bpp + floor))``, each crop's relative change counted by its real pixels.
    ``floor`` keeps a near-empty crop (a black background at a few hundredths of a bit) from taking
    the whole batch."""
    bpp = crop_bits.detach() / crop_pixels.clamp_min(1)
    w = 1.0 / (bpp + floor)
    return w * crop_pixels.sum() / (w * crop_pixels).sum().clamp_min(1e-12)


def lattice_step_weights(f: int, weight: float, device) -> torch.Tensor | None:
    """Per step, the loss's weight of its pixel bits: ``weight`` on the steps of the stride-2 base
    lattice (bitstream 7's level 2, coded by JPEG-XL where that is smaller), 1 elsewhere; None
    when every step weighs 1 (the loss is then the plain sum, as before)."""
    if weight == 1.0 or f < 4:
        return None
    from lvpnet.coding import lattice
    from lvpnet.model.prep import ORDERS

    ks = lattice.steps(ORDERS[f], lattice.stride(f, 2))
    return torch.tensor([weight if k in ks else 1.0 for k in range(len(ORDERS[f]))], device=device)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# ------------------------------------------------------------------ data


def _default_data() -> Path:
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / ".traindata", here.parents[3] / "shared" / "data"):
        if (cand / "index.json").exists() or (cand / "manifest.json").exists():
            return cand
    return here.parents[3] / "shared" / "data"


def parse_baselines(path: Path) -> dict:
    """id -> best classical bits per sample, from baselines-val.md (last column)."""
    best = {}
    if not path.exists():
        return best
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 10 and cells[0] and not cells[0].startswith(("id", "-", "**")):
            try:
                best[cells[0]] = float(cells[-1])
            except ValueError:
                pass
    return best


def load_data(data_dir: Path):
    """-> (train: list of (id, [2-D int32 slices]), val: list of dicts, source description)."""
    data_dir = Path(data_dir)
    if not (data_dir / "index.json").exists() and not (data_dir / "manifest.json").exists():
        # the corpus is not shipped with the code: say where it was looked for and how to point at it
        raise SystemExit(f"lvpnet.train: no training data in {data_dir} (neither a manifest.json corpus nor a "
                         "prepared index.json): the train / val corpus is not part of the package; give its "
                         "folder with --data DIR")
    if (data_dir / "index.json").exists():
        idx = json.loads((data_dir / "index.json").read_text())
        train = []
        for it in idx["train"]:
            with np.load(data_dir / it["file"]) as z:
                sl = [z[k].astype(np.int32) for k in sorted(z.files, key=lambda s: int(s[1:]))]
            train.append((it["id"], sl))
        val = []
        for it in idx["val"]:
            with np.load(data_dir / it["file"]) as z:
                arr = z["image"]
            val.append(_val_entry(it, arr, it.get("best")))
        return train, val, f"prepared:{data_dir}"
    man = json.loads((data_dir / "manifest.json").read_text())
    best = parse_baselines(data_dir.parent / "baselines-val.md")
    train, val = [], []
    for it in man["items"]:
        with np.load(data_dir / it["file"]) as z:
            arr = z["image"]
        if it["split"] == "train":
            train.append((it["id"], grey_slices(arr, it.get("rgb", False))))
        elif it["split"] == "val":
            val.append(_val_entry(it, arr, best.get(it["id"])))
    return train, val, f"manifest:{data_dir}"


def _val_entry(it, arr, best):
    return {
        "id": it["id"],
        "modality": it.get("modality"),
        "rgb": bool(it.get("rgb", False)),
        "shape": list(arr.shape),
        "bits": it.get("effective_bits"),
        "slices": grey_slices(arr, bool(it.get("rgb", False))),
        "n": int(arr.size),
        "best": best,
    }


class Sampler:
    """Random crops (with flips/transposes) from the train slices, arrays weighted by samples**power."""

    def __init__(self, train, crop: int, f: int, power: float, seed: int):
        self.rng = np.random.default_rng(seed)
        self.crop, self.f = crop, f
        self.arrays = [sl for _id, sl in train if sl]
        sizes = np.array([sum(s.size for s in sl) for sl in self.arrays], dtype=np.float64)
        w = sizes**power
        self.p = w / w.sum()

    def one(self):
        rng, c = self.rng, self.crop
        sl = self.arrays[rng.choice(len(self.arrays), p=self.p)]
        s = sl[rng.integers(len(sl))]
        if rng.random() < 0.5:
            s = s.T
        if rng.random() < 0.5:
            s = s[::-1]
        if rng.random() < 0.5:
            s = s[:, ::-1]
        H, W = s.shape
        h, w = min(H, c), min(W, c)
        i, j = rng.integers(H - h + 1), rng.integers(W - w + 1)
        x = np.ascontiguousarray(s[i : i + h, j : j + w]).astype(np.int64)
        x = x - x.min()
        R = int(x.max())
        v = polyphase_pad(x, c, c, self.f)
        m = np.zeros((c, c), bool)
        m[:h, :w] = True
        return v, m, R

    def batch(self, n: int, device):
        vs, ms, Rs = zip(*(self.one() for _ in range(n)))
        v = torch.from_numpy(np.stack(vs).astype(np.float32)).to(device, non_blocking=True)
        m = torch.from_numpy(np.stack(ms)).to(device, non_blocking=True)
        R = torch.tensor(Rs, dtype=torch.int64, device=device)
        B = torch.tensor([bit_depth(r) for r in Rs], dtype=torch.int64, device=device)
        return v, m, R, B


# ------------------------------------------------------------------ the latent's rate


def charged_latent_bits(o: dict, free_bits: float) -> torch.Tensor:
    """The latent bits the loss charges for a batch (``LVPNet.forward``'s output ``o``).

    ``free_bits`` > 0: free bits per channel (Kingma et al. 2016). A channel whose mean code length
    over the batch's blocks is below ``free_bits`` is charged ``free_bits`` per block, a constant,
    so the rate gives it no gradient; above it is charged what it costs. Under the histogram prior
    the rate's gradient pulls every ``y`` towards its channel's likeliest value, so a channel that
    has lost its variation is pulled further in, and the pixel bits alone must pay for any
    variation it might carry: training collapsed the latent this way (docs/MODEL.md section 6).
    With free bits, the first ``free_bits`` a channel spends per block cost the gradient nothing.
    The value reported (and evaluated) is always the true ``o["latent_bits"]``."""
    if free_bits <= 0:
        return o["latent_bits"]
    blocks = o["latent_blocks"].clamp_min(1)
    per_block = o["latent_channel_bits"] / blocks
    return blocks * per_block.clamp_min(free_bits).sum()  # clamp: no gradient below the floor


@torch.no_grad()
def reopen_latent(model: LVPNet, sampler: Sampler, device, batches: int = 4, batch: int = 8) -> dict:
    """Give a collapsed encoder a new output layer (``encoder.head``) that gradients can move.

    Measured on the shipped weights: the head's outputs sit near -329 for most channels, where
    ``y = 32 tanh(h / 32)`` is flat (slope ~1e-9) and ``y`` below ``-zmax`` is clamped for the
    decoder's straight-through gradient too, so no loss, free bits included, can make ``z`` vary
    again. The new head has the default (small) random weights and per-channel biases chosen, on
    ``batches`` x ``batch`` train crops, so each channel's mean pre-activation lands where ``y`` is
    in the middle of the bin of the channel's old most frequent ``z``: the decoder first sees the
    ``z`` it was trained on, with small variations and a live gradient."""
    enc, cfg = model.encoder, model.cfg
    was_training = model.training
    model.eval()
    feats, zs, masks = [], [], []
    hook = enc.head.register_forward_hook(lambda _m, inp, _out: feats.append(inp[0]))
    try:
        for _ in range(batches):
            v, m, _R, B = sampler.batch(batch, device)
            zs.append(model.latent(v, B)[1])
            masks.append(torch.nn.functional.max_pool2d(m[:, None].float(), cfg.stride) > 0)
    finally:
        hook.remove()
    C = cfg.latent_channels
    sel = torch.cat([mk.expand(-1, C, -1, -1).permute(1, 0, 2, 3).reshape(C, -1) for mk in masks], 1)
    z = torch.cat([t.permute(1, 0, 2, 3).reshape(C, -1) for t in zs], 1).long()
    old = torch.stack([torch.bincount(z[c][sel[c]] + cfg.zmax, minlength=2 * cfg.zmax + 1).argmax() for c in range(C)])
    old = old - cfg.zmax
    enc.head.reset_parameters()
    enc.head.bias.zero_()
    f = torch.cat([enc.head(t).permute(1, 0, 2, 3).reshape(C, -1) for t in feats], 1)
    mean_wf = (f * sel).sum(1) / sel.sum(1).clamp_min(1)
    target = (old.to(f.dtype) + 0.5).clamp(-cfg.zmax + 0.5, cfg.zmax - 0.5) * cfg.q_step
    enc.head.bias.copy_(enc.bound * torch.atanh(target / enc.bound) - mean_wf)
    model.train(was_training)
    return {"old_z": old.tolist(), "target_y": target.tolist()}


def _masked_mean(t: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """Per-channel mean of t (N, C, h, w) over the blocks where sel (N, 1, h, w) is True -> (C,)."""
    w = sel.to(t.dtype).expand_as(t)
    return (t * w).sum((0, 2, 3)) / w.sum((0, 2, 3)).clamp_min(1)


def _set_int(conv, w_int: torch.Tensor, b_int: torch.Tensor) -> None:
    """Give an IntConv2d exactly these integer weights and biases (its real values are their scaled ones)."""
    from lvpnet.model.intnet import BIAS_MAX, WMAX

    if float(w_int.abs().max()) > WMAX or float(b_int.abs().max()) > BIAS_MAX:
        raise ValueError("integer weights or biases out of range")
    conv.weight.data.copy_(w_int.to(conv.weight.dtype) * 2.0**-conv.fw)
    conv.bias.data.copy_(b_int.to(conv.bias.dtype) * 2.0 ** -(conv.fw + conv.f_in))


@torch.no_grad()
def reopen_qcm(model: LVPNet, sampler: Sampler, device, batches: int = 4, batch: int = 8, seed: int = 0) -> dict:
    """New QCM weights whose outputs start inside their ranges, the decoder's view kept.

    Measured on the shipped weights (and session 12's runs): the QCM's hidden layer is 0 or 127
    everywhere (ReLU off or clamped) and its last layer's outputs are -82..-1 or 4..76, so
    ``c`` is a per-channel constant 0 or 3, no gradient reaches either layer, and on every image
    the compensated error is 0.37 above the uncompensated one. New weights: the hidden layer
    random with its biases centring every unit at 64 (of 0..127) on train crops, its spread
    scaled to about 24; the last layer nearly zero with biases that put each channel's ``c`` at
    its mean sub-bin position ``4 (y / Q - z)`` (the MSE's optimum without information from
    ``z``). The ``up`` layer's integer biases absorb the change of each channel's most frequent
    ``c``, so on those ``z`` the predictor sees exactly the input it was trained on."""
    cfg, q = model.cfg, model.qcm
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    zs, us, sels = [], [], []
    for _ in range(batches):
        v, m, _R, B = sampler.batch(batch, device)
        y, z, _ = model.latent(v, B)
        yc = torch.clamp(y / cfg.q_step, -cfg.zmax, cfg.zmax + 1.0)
        zs.append(z)
        us.append(yc - z)
        sels.append(torch.nn.functional.max_pool2d(m[:, None].float(), cfg.stride) > 0)
    z, u, sel = torch.cat(zs), torch.cat(us), torch.cat(sels)
    C = z.shape[1]

    def mode(c: torch.Tensor) -> torch.Tensor:  # per-channel most frequent value of an integer map
        flat = c.permute(1, 0, 2, 3).reshape(C, -1).long()
        keep = sel.expand_as(c).permute(1, 0, 2, 3).reshape(C, -1)
        return torch.stack([torch.bincount(flat[i][keep[i]] + 64, minlength=256).argmax() - 64 for i in range(C)])

    c_old = mode(q(z) - 4.0 * z)
    # hidden layer: random directions, spread about 24 of 0..127, centred at 64
    l1, l2 = q.l1, q.l2
    std = (2.0 / l1.cin) ** 0.5
    w1 = torch.randn(l1.weight.shape, generator=gen).to(device) * std
    acc = torch.nn.functional.conv2d(z, torch.round(w1 * 2.0**l1.fw))
    spread = float(acc.permute(1, 0, 2, 3).reshape(acc.shape[1], -1).std(1).mean()) * 2.0**-l1.shift
    w1 = torch.round(w1 * min(1.0, 24.0 / max(spread, 1e-6)) * 2.0**l1.fw).clamp(-127, 127)
    acc = torch.nn.functional.conv2d(z, w1)
    b1 = torch.round(64.5 * 2.0**l1.shift - _masked_mean(acc, sel))
    _set_int(l1, w1, b1)
    h = l1(z)
    # last layer: weights of about one quantum (live for the straight-through rounding), biases on target
    w2 = torch.round(torch.randn(l2.weight.shape, generator=gen).to(device) * 0.5).clamp(-127, 127)
    acc2 = torch.nn.functional.conv2d(h, w2)
    target = torch.clamp(4.0 * _masked_mean(u, sel), 0.0, 3.0)
    b2 = torch.round((target + 0.5) * 2.0**l2.shift - _masked_mean(acc2, sel))
    _set_int(l2, w2, b2)
    c_new = mode(q(z) - 4.0 * z)
    # the up layer is linear before its floor: shift its integer biases by what the new c adds
    up = model.up
    wu = up.int_weight()[:, :, 0, 0]
    bu = up.int_bias() - wu @ (c_new - c_old).to(wu.dtype)
    _set_int(up, up.int_weight(), bu)
    h_hid = h.permute(1, 0, 2, 3).reshape(h.shape[1], -1)
    model.train(was_training)
    return {
        "c_old": torch.bincount(c_old.clamp(0, 3), minlength=4).tolist(),
        "c_new": torch.bincount(c_new.clamp(0, 3), minlength=4).tolist(),
        "c_mode": c_new.tolist(),
        "hidden_off": float((h_hid == 0).float().mean()),
        "hidden_sat": float((h_hid == 127).float().mean()),
    }


def range_bits(h: torch.Tensor, bound: float, lo: float, hi: float) -> torch.Tensor:
    """Per-element hinge on the encoder head's pre-tanh output ``h`` (``y = bound tanh(h / bound)``):
    0 while ``lo <= y <= hi``, else the distance of ``h`` beyond the matching pre-image.

    Why on ``h`` rather than ``y``: where ``y`` leaves the coded range the tanh is nearly flat (its
    slope was 1e-9 at the shipped weights' ``h = -329``), so a penalty on ``y`` would not pull it
    back; on ``h`` the pull is the same however far out. Below ``-zmax`` the decoder's
    straight-through ``z`` is clamped, so there a channel has no pixel gradient, and under free bits
    no rate gradient either: session 12 saw 49% of the values of a slice go there."""
    h_lo = bound * math.atanh(lo / bound)
    h_hi = bound * math.atanh(hi / bound)
    return torch.relu(h_lo - h) + torch.relu(h - h_hi)


def centred_rate(model: LVPNet, yq: torch.Tensor, sel: torch.Tensor, charged: torch.Tensor | None = None) -> torch.Tensor:
    """A zero-valued term whose gradient turns the prior's rate slope into a centred one.

    ``FactorizedPrior.bits`` gives every ``y`` in bin ``z`` the slope ``bits[z+1] - bits[z]``, the same
    across the bin, so the rate drives each value to the edge of its bin on the likelier side (measured,
    session 13: with every latent bit charged, 75% of the values sat just below -31, the rest mostly at a
    bin's edge, and ``|y - z|`` was about 0.1, leaving the QCM nothing to compensate). Here the slope in
    the lower half of a bin is ``bits[z] - bits[z-1]``: the linear interpolation of the bit table between
    bin centres, so around its channel's likeliest value ``y`` settles at the bin's centre. Below the
    coded range the slope is -1 (pulls back), which the prior means but does not do (see below). ``yq`` = y / Q with its gradient, ``sel`` (N, 1, h, w) the
    blocks with a real pixel, ``charged`` (C,) bool: the channels whose rate the loss charges (free bits)."""
    zmax = model.cfg.zmax
    with torch.no_grad():
        tab = model.prior.bit_table()  # (C, V), after this batch's histogram update, as the prior used it
        C, V = tab.shape
        ones = torch.ones(C, 1, device=tab.device, dtype=tab.dtype)
        up_tab = torch.cat([tab[:, 1:] - tab[:, :-1], ones], 1)
        down_tab = torch.cat([-ones, tab[:, 1:] - tab[:, :-1]], 1)
        y0 = yq.detach()
        z = torch.clamp(torch.floor(y0), -zmax, zmax)
        idx = (z.long() + zmax).permute(1, 0, 2, 3).reshape(C, -1)
        up = torch.gather(up_tab, 1, idx).reshape(C, *z.shape[:1], *z.shape[2:]).permute(1, 0, 2, 3)
        down = torch.gather(down_tab, 1, idx).reshape(C, *z.shape[:1], *z.shape[2:]).permute(1, 0, 2, 3)
        inside = (y0 >= -zmax) & (y0 < zmax + 1)
        delta = torch.where(inside & (y0 - z < 0.5), down - up, torch.zeros_like(up))
        # below the range: the prior means a slope of -1 there, but it tests its straight-through z,
        # whose value is the clamped z, so it never sees y < -zmax and gives bits[-zmax+1] - bits[-zmax],
        # which pushes y further out whenever -zmax is the likeliest value
        delta = torch.where(y0 < -zmax, -1.0 - up, delta)
        w = sel.to(delta.dtype).expand_as(delta)
        if charged is not None:
            w = w * charged.to(delta.dtype).view(1, -1, 1, 1)
    return (delta * w * (yq - y0)).sum()


# ------------------------------------------------------------------ evaluation


@torch.no_grad()
def fingerprints(model: LVPNet, val, device, n: int = 2, max_pixels: int = 300_000) -> list:
    """For the first n small val slices: z and sha256 of every step's integer (mu, s) from the
    integer decoder on ``device``; recompute elsewhere to check bit-exact portability."""
    import hashlib

    out = []
    with ExactMode():
        dec = IntegerDecoder(model.export_decoder(), device=device)
        for e in val:
            if len(out) >= n:
                break
            s = e["slices"][0]
            if s.size > max_pixels:
                continue
            vmin, R, B = slice_params(s)
            v = s.astype(np.int64) - vmin
            Hp, Wp = padded_size(*v.shape, dec.cfg.stride)
            vp = polyphase_pad(v, Hp, Wp, dec.f)
            z = model.encode_slice(vp, B, device=device)
            feats = dec.features(z)
            vt = torch.from_numpy(vp).to(dec.device)
            hashes, ctx = [], []
            for k, (di, dj) in enumerate(dec.order):
                mu, sc = dec.predict(feats, ctx, k, R, B, known=vt[di::dec.f, dj::dec.f])
                hashes.append(hashlib.sha256(mu.cpu().numpy().astype("<i8").tobytes() + sc.cpu().numpy().astype("<i8").tobytes()).hexdigest())
                ctx.append(vt[di::dec.f, dj::dec.f])
            out.append({"id": e["id"], "slice": 0, "z": z.cpu().tolist(), "R": R, "B": B, "vmin": vmin, "hashes": hashes})
    return out


@torch.no_grad()
def check_fingerprints(ckpt, fps: list, val, device="cpu", dtype=None) -> list[bool]:
    """Recompute the (mu, s) hashes of ``fingerprints`` from their stored z with the integer
    decoder of ``ckpt`` on this device: True where bit-identical."""
    import hashlib

    dec = IntegerDecoder.from_checkpoint(ckpt, device=device, dtype=dtype)
    byid = {e["id"]: e for e in val}
    res = []
    for fp in fps:
        s = byid[fp["id"]]["slices"][fp["slice"]]
        v = s.astype(np.int64) - fp["vmin"]
        Hp, Wp = padded_size(*v.shape, dec.cfg.stride)
        vp = polyphase_pad(v, Hp, Wp, dec.f)
        feats = dec.features(torch.tensor(fp["z"]))
        vt = torch.from_numpy(vp).to(dec.device)
        ok, ctx = True, []
        for k, (di, dj) in enumerate(dec.order):
            mu, sc = dec.predict(feats, ctx, k, fp["R"], fp["B"], known=vt[di::dec.f, dj::dec.f])
            h = hashlib.sha256(mu.cpu().numpy().astype("<i8").tobytes() + sc.cpu().numpy().astype("<i8").tobytes()).hexdigest()
            ok &= h == fp["hashes"][k]
            ctx.append(vt[di::dec.f, dj::dec.f])
        res.append(bool(ok))
    return res


@torch.no_grad()
def base_layer_costs():
    """``codecs.lvpnet_base.costs`` (bitstream 7's base layer) for the val estimates, or None where
    the codec or imagecodecs is missing: ``scripts/gpu_train.sh`` stages only ``lvpnet.model``,
    ``lvpnet.coding`` and this module on a device with only torch and numpy, and its estimates are
    then the latest bitstream's without a base lattice (every step by the network)."""
    try:
        import imagecodecs  # noqa: F401

        from lvpnet.codecs.lvpnet_base import costs
    except ImportError:
        return None
    return costs


def evaluate(model: LVPNet, val, device, max_pixels: int | None = None, dtype=None, lattice_costs=None) -> dict:
    """Exact integer-path bits on every val image. ``lattice_costs``: bitstream 7's base layer
    (``base_layer_costs()``)."""
    with ExactMode():  # TF32 off and no cuDNN autotuning over the many val shapes
        return _evaluate(model, val, device, max_pixels, dtype, lattice_costs)


def _evaluate(model: LVPNet, val, device, max_pixels: int | None = None, dtype=None, lattice_costs=None) -> dict:
    model.eval()
    dec = IntegerDecoder(model.export_decoder(), device=device, dtype=dtype)
    res, tot_bits, tot_n, tot_best = [], 0.0, 0, 0.0
    t0 = time.time()
    for e in val:
        if max_pixels and e["n"] > max_pixels:
            continue
        pb = lb = 0.0
        steps = None
        for s in e["slices"]:
            r = slice_bits(model, dec, s, enc_device=device, lattice_costs=lattice_costs)
            pb += r["pixel_bits"] + r.get("side_bits", 0.0)  # side: the codec's per-step scale offsets
            lb += r["latent_bits"]
            steps = r["step_bits"] if steps is None else [a + b for a, b in zip(steps, r["step_bits"])]
        n = e["n"]
        bpsp = (pb + lb) / n
        row = {
            "id": e["id"],
            "modality": e["modality"],
            "n": n,
            "bpsp": bpsp,
            "latent_bpsp": lb / n,
            "step_bpsp": [b / n for b in steps],
            "best": e["best"],
            "ratio": bpsp / e["best"] if e["best"] else None,
        }
        res.append(row)
        tot_bits += pb + lb
        tot_n += n
        if e["best"] is not None:
            tot_best += e["best"] * n
    model.train()
    return {
        "images": res,
        "total_bits": tot_bits,
        "total_n": tot_n,
        "bpsp": tot_bits / max(tot_n, 1),
        "best_bpsp": tot_best / max(tot_n, 1),
        "ratio": (tot_bits / tot_best) if tot_best else None,
        "seconds": time.time() - t0,
    }


# ------------------------------------------------------------------ reporting


def model_card(path: Path, cfg: dict, meta: dict, val: dict | None, sha: str | None) -> None:
    L = ["# LVPNet model card", ""]
    L.append(f"- checkpoint: `best.pt`, sha256 `{sha}`" if sha else "- checkpoint: none written")
    for k in ("device", "steps", "train_minutes", "params", "data_source", "seed", "torch", "when", "eval_device"):
        if k in meta:
            L.append(f"- {k}: {meta[k]}")
    L.append(f"- train ids ({len(meta.get('train_ids', []))}): " + ", ".join(meta.get("train_ids", [])))
    L.append("- estimated bits = ideal -log2 p under the exact integer tables (pixels + latent), not file bytes")
    L.append("")
    L.append("## Config")
    L.append("```json")
    L.append(json.dumps(cfg, indent=1))
    L.append("```")
    if val:
        L.append("")
        L.append(f"## Val (step {val.get('step')}), estimated bits per sample")
        L.append("")
        L.append("| id | modality | samples | ours | latent | best classical | ratio |")
        L.append("|---|---|---|---|---|---|---|")
        for r in val["images"]:
            ratio = f"{r['ratio']:.3f}" if r["ratio"] else "-"
            best = f"{r['best']:.3f}" if r["best"] else "-"
            L.append(
                f"| {r['id']} | {r['modality']} | {r['n']} | {r['bpsp']:.4f} | {r['latent_bpsp']:.4f} | {best} | {ratio} |"
            )
        ratio = f"{val['ratio']:.4f}" if val["ratio"] else "-"
        L.append(f"| **total** | | {val['total_n']} | **{val['bpsp']:.4f}** | | {val['best_bpsp']:.4f} | **{ratio}** |")
    path.write_text("\n".join(L) + "\n")


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="lvpnet.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--device", default=None)
    ap.add_argument("--minutes", type=float, default=None, help="training wall-clock budget (val evals included)")
    ap.add_argument("--out", default="checkpoints/run")
    ap.add_argument("--resume", default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--crop", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the config's)")
    ap.add_argument("--lr-min", type=float, default=None, help="final learning rate of the cosine schedule")
    ap.add_argument("--val-every", type=float, default=None, help="minutes between val evaluations")
    ap.add_argument("--val-max-pixels", type=int, default=None, help="skip val images larger than this (smoke tests)")
    ap.add_argument("--eval-only", default=None, metavar="CKPT",
                    help="evaluate CKPT on every val image (integer path), write eval.json + model_card.md to --out")
    ap.add_argument("--float32", action="store_true", help="integer path in float32 on the CPU too (exact, faster)")
    args = ap.parse_args(argv)
    if args.eval_only:
        return eval_only(args)

    conf = json.loads(Path(args.config).read_text())
    tcfg = dict(DEFAULT_TRAIN)
    tcfg.update(conf.get("train", {}))
    base_tcfg = dict(tcfg)  # before this command's overrides: what a run resuming this one starts from
    for k in ("batch", "crop", "seed", "lr", "lr_min"):
        if getattr(args, k) is not None:
            tcfg[k] = getattr(args, k)
    if args.val_every is not None:
        tcfg["val_every_minutes"] = args.val_every
    minutes = args.minutes if args.minutes is not None else float(tcfg.get("minutes", 10))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seed = int(tcfg["seed"])
    torch.manual_seed(seed)
    np.random.seed(seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    data_dir = Path(args.data) if args.data else _default_data()
    train, val, source = load_data(data_dir)
    log(f"data {source}: {len(train)} train arrays, {sum(len(s) for _, s in train)} slices; {len(val)} val images")
    lattice_costs = base_layer_costs()
    log("val estimates: the latest bitstream, base layers by JPEG-XL" if lattice_costs
        else "val estimates: the latest bitstream without base layers (no imagecodecs here)")

    mcfg = ModelConfig(**conf.get("model", {}))
    model = LVPNet(mcfg)
    if args.resume:
        ck = torch.load(args.resume, map_location="cpu", weights_only=True)
        model.load_resumable(ck)
        log(f"resumed from {args.resume} (head {ck['config'].get('head')} -> {mcfg.head})")
    model.to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # training only; the integer decoder turns TF32 off
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    # (the latent prior is a running histogram, not a gradient-trained parameter)
    opt = torch.optim.Adam([{"params": list(model.parameters()), "scale": 1.0}], lr=tcfg["lr"])
    sampler = Sampler(train, int(tcfg["crop"]), mcfg.subimage, float(tcfg["sample_power"]), seed)
    if tcfg.get("reopen_latent"):  # its own crops, so the training stream is the same with or without it
        crops = Sampler(train, int(tcfg["crop"]), mcfg.subimage, float(tcfg["sample_power"]), seed + 1)
        info = reopen_latent(model, crops, device)
        log(f"latent reopened: new encoder head; old z per channel {sorted(set(info['old_z']))}")
    if tcfg.get("reopen_qcm"):
        crops = Sampler(train, int(tcfg["crop"]), mcfg.subimage, float(tcfg["sample_power"]), seed + 2)
        info = reopen_qcm(model, crops, device, seed=seed)
        model.qcm.open_clamp = True
        log(f"QCM reopened: c per channel (counts of 0..3) {info['c_old']} -> {info['c_new']}; hidden units "
            f"off {info['hidden_off']:.2f}, saturated {info['hidden_sat']:.2f}; clamp passes gradients back into 0..3")
    range_w = float(tcfg.get("range_bits", 0.0))
    heads = []  # the encoder head's last output (pre-tanh), for the range hinge and the QCM error log
    model.encoder.head.register_forward_hook(lambda _m, _i, out: heads.__setitem__(slice(None), [out]))
    qcm_out = []
    model.qcm.register_forward_hook(lambda _m, _i, out: qcm_out.__setitem__(slice(None), [out]))
    # The rate's straight-through slope is constant inside a bin, so it drives y to a bin's edge; at
    # -zmax the hinge stops it. Measured (session 13): with free_bits 0, 75% of the y values sat just
    # below -31, where z = -31 and any c > 0 widens |y - y_hat|; a margin of 0.5 holds them at the
    # bin's middle instead, where the QCM's c = 2 is exact.
    y_lo = (-mcfg.zmax + float(tcfg.get("range_margin", 0.0))) * mcfg.q_step
    y_hi = (mcfg.zmax + 0.5) * mcfg.q_step
    rate_centred = bool(tcfg.get("rate_centred", False))
    if rate_centred:
        log("rate: centred slope inside the bins (the bit table interpolated between bin centres)")
    if range_w > 0:
        log(f"range hinge: {range_w} bits per unit of the head's output beyond y in [{y_lo}, {y_hi}]")
    free_bits = float(tcfg.get("free_bits", 0.0))
    if free_bits > 0:
        log(f"free bits: {free_bits} per latent channel per block")
    step_w = lattice_step_weights(mcfg.subimage, float(tcfg.get("lattice_weight", 1.0)), device)
    crop_floor = float(tcfg.get("crop_floor_bpp", 0.0))
    if crop_floor > 0 and step_w is not None:
        raise SystemExit("crop_floor_bpp and lattice_weight weigh the same bits two ways: set one of them")
    if crop_floor > 0:
        log(f"crops weighed by 1 / (bits per pixel + {crop_floor:g}) (crop_floor_bpp)")
    if step_w is not None:
        log(f"step weights in the loss: {[round(float(w), 3) for w in step_w]} (the stride-2 lattice's steps lighter)")
    elif float(tcfg.get("lattice_weight", 1.0)) != 1.0:
        log(f"lattice_weight ignored: {mcfg.subimage} x {mcfg.subimage} sub-images have no stride-2 lattice of steps")
    nparams = model.n_params()
    log(f"model {nparams} params, subimage={mcfg.subimage}, device {device}, budget {minutes} min")

    meta = {
        "device": str(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
        "params": nparams,
        "data_source": source,
        "seed": seed,
        "torch": str(torch.__version__),
        "train_ids": [i for i, _ in train],
        "val_ids": [e["id"] for e in val],
        "train_config": tcfg,
        # the config file's own settings: a smoke test's --batch 2 --crop 64 must not become the next GPU
        # session's (scripts/gpu_checkpoint.py expand starts from these)
        "train_config_base": base_tcfg,
    }
    history, evals = [], []
    best = {"bits": math.inf, "eval": None, "sha": None}
    state = {"stop": False}

    def _sig(*_):
        state["stop"] = True

    signal.signal(signal.SIGTERM, _sig)
    signal.signal(signal.SIGINT, _sig)

    def write_log():
        (out / "log.json").write_text(
            json.dumps({"config": conf, "args": vars(args), "meta": meta, "history": history, "evals": evals, "best": best}, indent=1)
        )

    def do_eval(step):
        ev = evaluate(model, val, device, args.val_max_pixels, lattice_costs=lattice_costs)
        ev["step"] = step
        ev["minutes"] = (time.time() - t_start) / 60
        evals.append(ev)
        ratio = f"{ev['ratio']:.4f}" if ev["ratio"] else "-"
        log(f"val step {step}: {ev['bpsp']:.4f} bpsp (best classical {ev['best_bpsp']:.4f}, ratio {ratio}) in {ev['seconds']:.1f}s")
        for r in ev["images"]:
            rr = f"{r['ratio']:.3f}" if r["ratio"] else "-"
            log(f"   {r['id']:34s} {r['bpsp']:7.4f} (lat {r['latent_bpsp']:.4f}) best {r['best']} ratio {rr}")
        if ev["total_bits"] < best["bits"]:
            meta.update({"steps": step, "train_minutes": round(ev["minutes"], 2), "when": time.strftime("%Y-%m-%d %H:%M:%S")})
            sha = save_checkpoint(out / "best.pt", model, {**meta, "val": _strip(ev)})
            best.update({"bits": ev["total_bits"], "eval": _strip(ev), "sha": sha, "step": step})
            model_card(out / "model_card.md", asdict_cfg(mcfg), meta, best["eval"], sha)
            log(f"   new best -> {out / 'best.pt'} ({(out / 'best.pt').stat().st_size / 1e6:.1f} MB)")
        write_log()

    budget = minutes * 60.0
    step = 0
    skipped = 0
    log_gn = 0.0
    last_eval = time.time()
    acc = {"bits": 0.0, "lat": 0.0, "n": 0.0, "mse": 0.0, "k": 0, "steps": None, "sp": None}
    model.train()
    try:
        while not state["stop"]:
            el = time.time() - t_start
            if el >= budget or (args.max_steps is not None and step >= args.max_steps):
                break
            frac = min(1.0, el / budget)
            lr = tcfg["lr_min"] + 0.5 * (tcfg["lr"] - tcfg["lr_min"]) * (1 + math.cos(math.pi * frac))
            lr *= min(1.0, (step + 1) / tcfg["warmup_steps"])
            for g in opt.param_groups:
                g["lr"] = lr * g["scale"]
            v, m, R, B = sampler.batch(int(tcfg["batch"]), device)
            o = model(v, m, R, B)
            n = o["n_pixels"].clamp_min(1)
            if crop_floor > 0:
                pixel_bits = (o["crop_bits_live"] * crop_weights(o["crop_bits_live"], o["crop_pixels"], crop_floor)).sum()
            else:
                pixel_bits = o["pixel_bits"] if step_w is None else (o["step_bits_live"] * step_w).sum()
            loss = (pixel_bits + charged_latent_bits(o, free_bits)) / n + mcfg.qcm_weight * o["qcm_mse"]
            hd = heads[0]
            lat_sel = torch.nn.functional.max_pool2d(m[:, None].float(), mcfg.stride)
            if range_w > 0:
                out_bits = (range_bits(hd, model.encoder.bound, y_lo, y_hi) * lat_sel).sum()
                loss = loss + range_w * out_bits / n
            if rate_centred:
                yq = model.encoder.bound * torch.tanh(hd / model.encoder.bound) / mcfg.q_step
                charged = None
                if free_bits > 0:  # channels under the floor get no rate gradient, centred or not
                    charged = o["latent_channel_bits"].detach() / o["latent_blocks"].clamp_min(1) >= free_bits
                loss = loss + centred_rate(model, yq, lat_sel, charged) / n
            opt.zero_grad(set_to_none=True)
            if not bool(torch.isfinite(loss)):
                skipped += 1
                step += 1
                continue
            loss.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"]))
            # Never let a non-finite or exploding gradient into Adam. Measured on the H200: the
            # gradient norm crept up (1e2 -> 4e2) and then jumped to 1e13+ within ~100 steps, after
            # which the model never recovered; skip any step whose norm exceeds `spike` times the
            # running (log-)average of accepted steps.
            spike = float(tcfg.get("spike_factor", 8.0))
            if not math.isfinite(gnorm) or (step > 50 and gnorm > spike * math.exp(log_gn)):
                opt.zero_grad(set_to_none=True)
                skipped += 1
                step += 1
                if skipped % 25 == 1:
                    log(f"step {step}: skipped (gradient norm {gnorm:.3g}, running {math.exp(log_gn):.3g}); {skipped} skipped so far")
                continue
            log_gn = math.log(max(gnorm, 1e-12)) if step < 20 else 0.95 * log_gn + 0.05 * math.log(max(gnorm, 1e-12))
            acc["gnorm"] = max(acc.get("gnorm", 0.0), gnorm)
            opt.step()
            step += 1
            acc["bits"] += float(o["pixel_bits"].detach())
            acc["lat"] += float(o["latent_bits"].detach())
            acc["n"] += float(n)
            acc["mse"] += float(o["qcm_mse"].detach())
            with torch.no_grad():  # the QCM error as Inspect measures it (unclamped y), on this batch
                yb = model.encoder.bound * torch.tanh(hd.detach() / model.encoder.bound) / mcfg.q_step
                zb = torch.clamp(torch.floor(yb), -mcfg.zmax, mcfg.zmax)
                wsel = lat_sel.expand_as(yb)
                nb = wsel.sum().clamp_min(1)
                acc["qb"] = acc.get("qb", 0.0) + float(((yb - zb).abs() * wsel).sum() / nb)
                acc["qa"] = acc.get("qa", 0.0) + float(((yb - qcm_out[0].detach() / 4.0).abs() * wsel).sum() / nb)
                acc["dead"] = acc.get("dead", 0.0) + float(((yb < -mcfg.zmax).to(yb.dtype) * wsel).sum() / nb)
            acc["k"] += 1
            sb = o["step_bits"].cpu().numpy()
            sp = o["step_pixels"].cpu().numpy()
            acc["steps"] = sb if acc["steps"] is None else acc["steps"] + sb
            acc["sp"] = sp if acc["sp"] is None else acc["sp"] + sp
            if step % int(tcfg["log_every"]) == 0 or step == 1:
                rec = {
                    "step": step,
                    "minutes": round((time.time() - t_start) / 60, 3),
                    "lr": lr,
                    "train_bpsp": (acc["bits"] + acc["lat"]) / acc["n"],
                    "train_latent_bpsp": acc["lat"] / acc["n"],
                    "qcm_mse": acc["mse"] / acc["k"],
                    "step_bpp": (acc["steps"] / np.maximum(acc["sp"], 1)).round(3).tolist(),
                    "max_grad_norm": round(acc.get("gnorm", 0.0), 3),
                    "qcm_l1_before": round(acc.get("qb", 0.0) / acc["k"], 4),
                    "qcm_l1_after": round(acc.get("qa", 0.0) / acc["k"], 4),
                    "y_below_range": round(acc.get("dead", 0.0) / acc["k"], 4),
                    "skipped_steps": skipped,
                }
                history.append(rec)
                log(
                    f"step {step} lr {lr:.2e} train {rec['train_bpsp']:.4f} bpsp (lat {rec['train_latent_bpsp']:.4f}) "
                    f"mse {rec['qcm_mse']:.4f} qcm |y-yhat| {rec['qcm_l1_before']:.3f} -> {rec['qcm_l1_after']:.3f} "
                    f"y<-zmax {rec['y_below_range']:.3f} gnorm {rec['max_grad_norm']} skipped {skipped} per-step {rec['step_bpp']}"
                )
                acc = {"bits": 0.0, "lat": 0.0, "n": 0.0, "mse": 0.0, "k": 0, "steps": None, "sp": None}
            if time.time() - last_eval >= tcfg["val_every_minutes"] * 60 and budget - (time.time() - t_start) > 45:
                do_eval(step)
                last_eval = time.time()
    except Exception as exc:  # keep what we have
        log(f"training stopped by {type(exc).__name__}: {exc}")
        meta["error"] = f"{type(exc).__name__}: {exc}"
    log(f"training loop done: {step} steps in {(time.time() - t_start) / 60:.2f} min")
    try:
        do_eval(step)
    except Exception as exc:
        log(f"final eval failed: {type(exc).__name__}: {exc}")
        meta["eval_error"] = str(exc)
    meta["total_steps"] = step
    meta["skipped_steps"] = skipped
    try:
        if best.get("sha"):
            ck = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(ck["state_dict"])
            model.to(device)
        meta["fingerprints"] = fingerprints(model, val, device)
        log(f"fingerprints of {len(meta['fingerprints'])} val slices (best checkpoint) in log.json")
    except Exception as exc:
        log(f"fingerprints failed: {type(exc).__name__}: {exc}")
    write_log()
    log(f"done in {(time.time() - t_start) / 60:.2f} min; best total {best.get('eval', {}) and best['eval']['bpsp']}")
    return 0


def eval_only(args) -> int:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data) if args.data else _default_data()
    _train, val, source = load_data(data_dir)
    ck = torch.load(args.eval_only, map_location="cpu", weights_only=True)
    model = LVPNet(ck["config"])
    model.load_state_dict(ck["state_dict"])
    model.to(device)
    dtype = torch.float32 if args.float32 else None
    from lvpnet.codecs.lvpnet_base import costs  # the card's figures are the current bitstream's: never without it

    ev = evaluate(model, val, device, args.val_max_pixels, dtype, costs)
    log(f"val: {ev['bpsp']:.4f} bpsp, best classical {ev['best_bpsp']:.4f}, ratio {ev['ratio']} ({ev['seconds']:.0f}s)")
    for r in ev["images"]:
        log(f"   {r['id']:34s} {r['bpsp']:7.4f} (lat {r['latent_bpsp']:.4f}) steps {[round(x, 3) for x in r['step_bpsp']]} best {r['best']} ratio {r['ratio']:.3f}")
    import hashlib

    sha = hashlib.sha256(Path(args.eval_only).read_bytes()).hexdigest()
    meta = dict(ck.get("meta", {}))
    meta["eval_device"] = f"{device} ({'float32' if dtype else 'default'} integer path)"
    ev["step"] = meta.get("steps")
    (out / "eval.json").write_text(json.dumps({"checkpoint": str(args.eval_only), "sha256": sha, "source": source, "eval": ev}, indent=1))
    model_card(out / "model_card.md", ck["config"], meta, ev, sha)
    return 0


def asdict_cfg(cfg: ModelConfig) -> dict:
    from dataclasses import asdict

    return asdict(cfg)


def _strip(ev: dict) -> dict:
    return {k: v for k, v in ev.items()}


if __name__ == "__main__":
    sys.exit(main())
