"""Where the bits go: bit-cost maps, latent maps and QCM error maps (arrays, no drawing).

For one 2-D slice (grey, or RGB coded as the planes G, R-G, B-G) and a loaded
model (float encoder ``LVPNet`` + exact ``IntegerDecoder``, docs/MODEL.md):

* **bit-cost map** ``pixel_bits`` (float32, rows x cols): the code length of
  every pixel, ``-log2(freq[symbol] / 2**16)`` under the model's integer
  frequency tables (at the scale the codec uses: the model's, moved by the
  step's per-slice offset; the table adapted to the slice, bitstream version 3;
  around the location refined on the slice and at the scale moved by the error
  feedback, version 4, ``coding.fitting``) plus that pixel's raw low bits (or, for an escaped pixel,
  the ``log2(R + 1)`` bits of its uniform code). Where bitstream version 7 hands the slice's
  coarse lattice to JPEG-XL (``coding.lattice``), that codestream's bits shared over the lattice's
  pixels in proportion to what the learned codec would have spent on each (``lattice.map_share``:
  JPEG-XL gives no per-pixel lengths, so this part of the map is an attribution; as bitstream 9
  codes it, the lattice chosen first and the steps after it fitted without the network's residuals
  on the lattice, ``coding.fitting.fit_plane``). A slice that
  the writer codes against the slice before it (bitstream version 8, ``coding.reference``: all but
  every ``compressor.REFERENCE_RUN``-th) is mapped against it too, reference flags included.
  RGB: the sum over the planes.
* **latent bits** ``latent_bits`` (float32, one cell per 32 x 32 block): the
  code length of the block's latent ``z`` (all channels, all planes) under the
  latent tables. Pixel map + latent map = the slice's whole ideal code length,
  the number ``lvpnet.coding.estimate.slice_bits`` reports (side information such as the
  slice minimum and range is not counted; these are estimates, not file bytes): both are one
  walk, ``coding.estimate.plane_walk`` of the latest profile, which the estimate sums and the maps
  lay out on the slice.
* **latent maps** ``z`` (int8, channels x blocks): the quantised latent; RGB
  stacks the planes' channels (G first, then R-G, then B-G).
* **QCM error maps** ``qcm_before`` / ``qcm_after`` (float32, per block): the
  mean over channels of ``|y - y_hat|`` with ``y_hat = z * Q_step`` and of
  ``|y - (y_hat + QCM)|`` where the QCM's compensated latent is
  ``y_t * Q_step / 4`` (``y_t = 4 z + c``, ``c`` in 0..3 predicted from ``z``)
  and ``y`` is the float encoder output (not clamped). In units of ``y``.

Long work is a generator yielding ``Progress`` (``iter_analyse``); one slice is
``analyse_slice``. Without a model, a ``.lvp`` still gives the real bits of
every chunk (``LvpFile.chunk_bytes(i) * 8``). This module never imports Qt or
napari.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import limits
from .errors import DamagedError, InputError
from .lvpfile import LvpFile
from .progress import Progress, span, tick, unplaced
from .progress import run as drive

BLOCK = 32  # pixels per latent cell along each axis (the model's stride)
DEFAULT_WEIGHTS = "lvpnet-v1.pt"
WEIGHTS_ENV = "LVPNET_WEIGHTS"  # the same override the learned codec honours
MAX_RANGE = (1 << 16) - 1  # the model codes slices whose range fits 16 bits
MAPS = ("bits", "latent", "qcm")


# ------------------------------------------------------------------ model


@dataclass(frozen=True)
class LoadedModel:
    """The float encoder and the exact integer decoder of one checkpoint."""

    net: object  # lvpnet.model.LVPNet (eval mode)
    dec: object  # lvpnet.model.IntegerDecoder
    path: str | None = None
    sha256: str | None = None

    @property
    def stride(self) -> int:
        return int(self.dec.cfg.stride)

    @property
    def channels(self) -> int:
        return int(self.dec.cfg.latent_channels)

    @property
    def q_step(self) -> float:
        return float(self.dec.cfg.q_step)

    @property
    def device(self) -> str:
        """Where the float encoder runs: "cpu", "cuda:0", ..."""
        return str(next(self.net.parameters()).device)

    @classmethod
    def from_parts(cls, net, dec, path=None, sha256=None) -> LoadedModel:
        net.eval()
        return cls(net=net, dec=dec, path=None if path is None else str(path), sha256=sha256)


def default_model_path() -> Path | None:
    """``$LVPNET_WEIGHTS`` when set, else the shipped weights (``lvpnet/resources/lvpnet-v1.pt``);
    None when neither exists (as the learned codec chooses its weights)."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env)
    try:
        from .resources import path
    except ImportError:  # pragma: no cover - resources not installed
        return None
    p = path(DEFAULT_WEIGHTS)
    return p if p.is_file() else None


def _device(device: str | None):
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, size: int, device: str) -> LoadedModel:
    import torch

    from .model import IntegerDecoder, LVPNet, load_checkpoint, load_error

    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    try:
        ck = load_checkpoint(path, "cpu")
        net = LVPNet.from_checkpoint(ck).to(device)
        # float32 with TF32 off is exact for the integer path (every partial sum < 2**24), as the codec runs it
        dec = IntegerDecoder.from_checkpoint(ck, device=device, dtype=torch.float32)
    except Exception as e:
        raise InputError(f"{path}: not usable as lvpnet model weights ({load_error(e, path)})") from None
    return LoadedModel.from_parts(net, dec, path, sha)


def load_model(path: str | os.PathLike | None = None, device: str | None = "cpu") -> LoadedModel | None:
    """Load a checkpoint (default: the shipped weights); None when no path is given and none ship.

    ``device``: "cpu", "cuda" or "auto". Loaded models are cached by path,
    modification time and device. A missing or unusable file raises InputError.
    """
    if path is None or str(path) in ("", "."):
        path = default_model_path()
        if path is None:
            return None
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model weights not found")
    st = path.stat()
    return _load_cached(str(path.resolve()), st.st_mtime_ns, st.st_size, str(_device(device)))


# ------------------------------------------------------------------ one slice


@dataclass
class SliceMaps:
    """Maps of one 2-D slice (see the module docstring for the exact definitions)."""

    index: int  # flat slice index (leading axes in C order, as in .lvp files)
    pixel_bits: np.ndarray  # float32 (rows, cols)
    latent_bits: np.ndarray  # float32 (ceil(rows/32), ceil(cols/32))
    z: np.ndarray  # int8 (channels, ceil(rows/32), ceil(cols/32))
    qcm_before: np.ndarray  # float32 (ceil(rows/32), ceil(cols/32))
    qcm_after: np.ndarray  # float32 (ceil(rows/32), ceil(cols/32))
    pixel_bits_total: float  # float64 sum of the per-pixel code lengths
    latent_bits_total: float  # float64 sum of the latent code lengths
    block: int = BLOCK
    plane_bits: list[dict] = field(default_factory=list)  # per plane: pixel_bits, latent_bits (RGB: 3 planes)
    # the latent's ablation (``analyse_slice(ablation=True)``, else None): per block, the bits the slice
    # would cost more with every channel's z set to its most frequent value in the plane (pixels and
    # latent; negative where the latent's variation costs more than it saves), and that slice's total
    latent_saving: np.ndarray | None = None  # float32 (ceil(rows/32), ceil(cols/32))
    ablated_bits_total: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.pixel_bits.shape)

    @property
    def n_pixels(self) -> int:
        return int(self.pixel_bits.size)

    @property
    def total_bits(self) -> float:
        return self.pixel_bits_total + self.latent_bits_total

    @property
    def bits_per_pixel(self) -> float:
        return self.total_bits / self.n_pixels

    @property
    def latent_saved_bits(self) -> float | None:
        """What the latent saves this slice: its bits with each channel's z at its mode minus with the real z."""
        return None if self.ablated_bits_total is None else self.ablated_bits_total - self.total_bits

    def on_grid(self, block_map: np.ndarray) -> np.ndarray:
        """A per-block map (``latent_bits``, ``z``, ``qcm_*``) placed on this slice's pixel grid."""
        return to_image_grid(block_map, self.shape, self.block)

    def total_bits_map(self) -> np.ndarray:
        """Pixel bits plus each block's latent bits spread evenly over its real pixels (sums to total_bits)."""
        return self.pixel_bits + self.on_grid(self.latent_bits / block_pixel_counts(self.shape, self.block))


def to_image_grid(block_map: np.ndarray, shape: Sequence[int], block: int = BLOCK) -> np.ndarray:
    """(..., h, w) block cells -> (..., rows, cols): each cell covers its block x block pixels, cropped."""
    a = np.asarray(block_map)
    rows, cols = int(shape[-2]), int(shape[-1])
    if a.shape[-2] * block < rows or a.shape[-1] * block < cols:
        raise ValueError(f"a {a.shape[-2:]} block map does not cover a {rows} x {cols} image")
    return np.repeat(np.repeat(a, block, axis=-2)[..., :rows, :], block, axis=-1)[..., :cols]


def block_pixel_counts(shape: Sequence[int], block: int = BLOCK) -> np.ndarray:
    """Number of real pixels in every block of a (rows, cols) image (edge blocks may be partial)."""
    rows, cols = int(shape[-2]), int(shape[-1])
    r = np.minimum(block, rows - block * np.arange(-(-rows // block)))
    c = np.minimum(block, cols - block * np.arange(-(-cols // block)))
    return np.outer(r, c)


def tile_channels(z: np.ndarray, columns: int | None = None, fill=0) -> np.ndarray:
    """(channels, h, w) -> one 2-D mosaic (a grid of the channel maps, row by row)."""
    z = np.asarray(z)
    n, h, w = z.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = -(-n // columns)
    out = np.full((rows * h, columns * w), fill, dtype=z.dtype)
    for c in range(n):
        r, k = divmod(c, columns)
        out[r * h : (r + 1) * h, k * w : (k + 1) * w] = z[c]
    return out


def _integer_slice(x, rgb: bool) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != (3 if rgb else 2) or (rgb and a.shape[-1] != 3):
        raise InputError(f"expected one {'RGB ' if rgb else ''}2-D slice, got shape {a.shape}")
    if a.size == 0:
        raise InputError("the slice is empty")
    if a.dtype.kind == "b":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or not np.array_equal(a, np.round(a)):
            raise InputError("bit-cost maps need integer data; this slice holds non-integer floats")
        return a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise InputError(f"bit-cost maps need integer data, not {a.dtype}")
    return a.astype(np.int64)


def channel_mode(z: np.ndarray) -> np.ndarray:
    """Each channel's most frequent value over the plane's blocks, broadcast back to ``z``'s shape
    (C, h, w): the latent's ablation replaces ``z`` by this (the smallest value on ties)."""
    z = np.asarray(z)
    flat = z.reshape(z.shape[0], -1).astype(np.int64)
    lo = int(flat.min())
    counts = np.stack([np.bincount(r - lo, minlength=int(flat.max()) - lo + 1) for r in flat])
    mode = (counts.argmax(1) + lo).astype(z.dtype)
    return np.broadcast_to(mode[:, None, None], z.shape).copy()


def block_sums(a: np.ndarray, grid: Sequence[int], block: int = BLOCK) -> np.ndarray:
    """(rows, cols) per-pixel values -> (h, w) sums over each block x block cell (the inverse of
    ``to_image_grid`` for totals: cells past the image's edge sum what they cover)."""
    h, w = int(grid[0]), int(grid[1])
    out = np.zeros((h * block, w * block), np.float64)
    out[: a.shape[0], : a.shape[1]] = a
    return out.reshape(h, block, w, block).sum(axis=(1, 3))


def _plane(model: LoadedModel, plane: np.ndarray, reference: np.ndarray | None = None,
           ablation: bool = False) -> dict:
    """Everything for one grey plane (int64 2-D), as float64 / int tensors moved to numpy
    (``reference``: the previous slice's plane, raw values, for bitstream 8's reference flags;
    ``ablation``: the plane coded again with ``channel_mode(z)``, ``latent_saving`` per block)."""
    import torch

    from .codecs import lvpnet_base
    from .codecs.weights import writes_prior_mode_latent
    from .coding.estimate import plane_walk
    from .coding.profiles import LATEST, PROFILES
    from .coding.reference import ref_values
    from .model.intnet import ExactMode
    from .model.lvpnet import one_cpu_thread
    from .model.prep import collapse_gaps, padded_size, polyphase_pad, slice_params, to_grid
    from .model.qcm import qcm_int

    net, dec = model.net, model.dec
    cfg, f = dec.cfg, dec.f
    # values on a grid are coded by their index, without runs of unused values, as the codec does
    vmin0, step, plane = to_grid(plane)
    span = slice_params(plane)[1]
    if span > MAX_RANGE:
        raise InputError(f"the slice spans {span + 1} values; the model codes ranges of at most 16 bits")
    plane, gaps = collapse_gaps(plane)
    vmin, R, B = slice_params(plane)
    ref = None if reference is None or R == 0 else ref_values(reference, vmin0, step, gaps, R)
    v = plane - vmin
    H, W = v.shape
    Hp, Wp = padded_size(H, W, cfg.stride)
    vp = polyphase_pad(v, Hp, Wp, f)
    costs = lvpnet_base.costs(v, R, f)  # once: the ablation walks the plane again with the same lattices
    tick(0.1)  # (a Cancel lands at each tick)

    def walk(z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The plane's per-pixel bits and per-block latent bits with latent ``z``, as the codec codes
        it (the latest profile; the estimate's walk, ``coding.estimate.plane_walk``)."""
        w = plane_walk(dec, z, v, vp, R, B, PROFILES[LATEST], costs, ref)
        bits = np.zeros((H, W), np.float64)
        for k, b in enumerate(w.pixel_bits):
            if b is not None:
                di, dj = dec.order[k]
                bits[di::f, dj::f] = b
        return bits, w.latent_bits.sum(0)

    with torch.no_grad():
        # what LVPNet.encode_slice does, keeping the float latent y as well
        dev = next(net.parameters()).device
        vt = torch.as_tensor(vp, device=dev).to(net.encoder.stem.weight.dtype)[None]
        with one_cpu_thread(dev):  # the file's z, whatever threads this process has
            y, z_hard, _ = net.latent(vt, torch.tensor([B], device=dev))
        y, z_net = y[0], z_hard[0].long()
        tick(0.2)
        with ExactMode():  # the QCM maps: how it compensates the network's own latent
            yt = qcm_int(z_net.to(dec.device, dec.dtype)[None], dec.qcm, dec.impl)[0]  # units Q/4
        # the bits as a file pays them: with the latent the encoder writes, which for weights whose card
        # says so is the prior's mode, not the GMSM's (``Engine.latent_z``)
        z = dec.prior_mode_latent(Hp, Wp).to(z_net.device) if writes_prior_mode_latent(model.sha256) else z_net
        bits, lat = walk(z)
        saving = None
        if ablation:
            z_mode = torch.from_numpy(channel_mode(z.cpu().numpy())).to(z.device)
            bits_m, lat_m = walk(z_mode)
            saving = block_sums(bits_m - bits, lat.shape) + (lat_m - lat)
        q = float(cfg.q_step)
        yd = y.double().cpu()
        zd = z_net.double().cpu()
        before = (yd - zd * q).abs().mean(0)
        after = (yd - yt.double().cpu() * (q / 4.0)).abs().mean(0)
    return {
        "pixel_bits": bits,
        "latent_bits": lat,
        "z": z.cpu().numpy(),
        "qcm_before": before.numpy(),
        "qcm_after": after.numpy(),
        "latent_saving": saving,
    }


def analyse_slice(x, model: LoadedModel, *, rgb: bool = False, index: int = 0, reference=None,
                  ablation: bool = False) -> SliceMaps:
    """Maps of one 2-D slice ((rows, cols), or (rows, cols, 3) with ``rgb``) under ``model``
    (``reference``: the slice before it, when the writer codes it against that one; ``ablation``:
    the latent's ablation too, ``SliceMaps.latent_saving``, which codes every plane twice)."""
    from .model.prep import rgb_to_planes

    if model is None:  # ``load_model()`` without weights installed
        raise InputError("no model: maps need the learned codec's weights (lvpnet-v1.pt, or load_model(path))")
    a = _integer_slice(x, rgb)
    planes = [p.astype(np.int64) for p in rgb_to_planes(a)] if rgb else [a]
    refs = [None] * len(planes)
    if reference is not None:
        r = _integer_slice(reference, rgb)
        if r.shape != a.shape:
            raise InputError(f"the reference slice is {r.shape}, the slice {a.shape}")
        refs = [p.astype(np.int64) for p in rgb_to_planes(r)] if rgb else [r]
    parts = [_plane(model, p, q, ablation) for p, q in zip(planes, refs)]
    pixel = sum(p["pixel_bits"] for p in parts)
    latent = sum(p["latent_bits"] for p in parts)
    out = SliceMaps(
        index=int(index),
        pixel_bits=pixel.astype(np.float32),
        latent_bits=latent.astype(np.float32),
        z=np.concatenate([p["z"] for p in parts]).astype(np.int8),
        qcm_before=np.mean([p["qcm_before"] for p in parts], axis=0).astype(np.float32),
        qcm_after=np.mean([p["qcm_after"] for p in parts], axis=0).astype(np.float32),
        pixel_bits_total=float(sum(p["pixel_bits"].sum() for p in parts)),
        latent_bits_total=float(sum(p["latent_bits"].sum() for p in parts)),
        block=model.stride,
        plane_bits=[{"pixel_bits": float(p["pixel_bits"].sum()), "latent_bits": float(p["latent_bits"].sum())}
                    for p in parts],
    )
    if ablation:
        saving = sum(p["latent_saving"] for p in parts)
        out.latent_saving = saving.astype(np.float32)
        out.ablated_bits_total = out.total_bits + float(saving.sum())
    return out


# ------------------------------------------------------------------ volumes and .lvp files


@dataclass
class Analysis:
    """Result of ``iter_analyse``: per-slice totals, maps of the analysed slices, real chunk bits."""

    frame_shape: tuple[int, ...]  # leading axes of the source (() for a 2-D image)
    slice_shape: tuple[int, int]  # (rows, cols)
    rgb: bool
    indices: list[int]  # flat indices of the analysed slices
    pixel_bits: np.ndarray | None  # (len(indices),) float64 estimated pixel bits; None without a model
    latent_bits: np.ndarray | None  # (len(indices),) float64 estimated latent bits; None without a model
    chunk_bits: np.ndarray | None  # (n_slices,) real bits of every stored chunk (.lvp only)
    chunk_codecs: list[str] | None = None  # (n_slices,) the codec id of every stored chunk (.lvp only)
    maps: list[SliceMaps] = field(default_factory=list)  # one per analysed slice (when maps were asked)
    model_path: str | None = None
    model_sha256: str | None = None
    file_model: str | None = None  # the model id a .lvp names in its header (None: classical codec)
    ablated_bits: np.ndarray | None = None  # (len(indices),) the estimate with z = channel_mode(z) (ablation)

    @property
    def n_slices(self) -> int:
        return int(np.prod(self.frame_shape, dtype=np.int64))

    @property
    def pixels_per_slice(self) -> int:
        return int(self.slice_shape[0] * self.slice_shape[1])

    @property
    def has_model(self) -> bool:
        return self.pixel_bits is not None

    @property
    def estimated_bits(self) -> np.ndarray | None:
        """(len(indices),) pixel + latent bits (ideal code length) of the analysed slices."""
        return None if self.pixel_bits is None else self.pixel_bits + self.latent_bits

    @property
    def latent_saved_bits(self) -> np.ndarray | None:
        """(len(indices),) what the latent saves each analysed slice (the ablation), or None."""
        return None if self.ablated_bits is None else self.ablated_bits - self.estimated_bits

    @property
    def model_matches_file(self) -> bool | None:
        """Whether a .lvp was coded with these weights (None: unknown or no learned codec)."""
        if self.file_model is None or self.model_sha256 is None:
            return None
        return self.file_model == self.model_sha256

    def stack(self, name: str, on_grid: bool = False) -> np.ndarray:
        """One map of every analysed slice stacked on a leading axis: 'pixel_bits', 'latent_bits',
        'z', 'qcm_before', 'qcm_after' or 'total_bits' (pixel bits with the latent share spread in)."""
        if not self.maps:
            raise ValueError("no maps were computed")
        if name == "total_bits":
            return np.stack([m.total_bits_map() for m in self.maps])
        out = np.stack([getattr(m, name) for m in self.maps])
        if on_grid and name != "pixel_bits":
            out = to_image_grid(out, self.slice_shape, self.maps[0].block)
        return out

    def histogram(self, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of the per-pixel code length over the analysed slices."""
        values = np.concatenate([m.pixel_bits.ravel() for m in self.maps]) if self.maps else np.zeros(0)
        hi = float(values.max()) if values.size else 1.0
        return np.histogram(values, bins=bins, range=(0.0, max(hi, 1e-6)))


def slice_layout(shape: Sequence[int], rgb: bool) -> tuple[tuple[int, ...], tuple[int, int]]:
    """(frame_shape, (rows, cols)) of an array laid out (frames..., rows, cols[, 3])."""
    shape = tuple(int(n) for n in shape)
    spatial = shape[:-1] if rgb else shape
    if len(spatial) < 2:
        raise InputError(f"shape {shape} is not an image: need at least rows and columns")
    return spatial[:-2], (spatial[-2], spatial[-1])


def flat_index(frame_index: Sequence[int], frame_shape: Sequence[int]) -> int:
    """Flat slice index of a position on the leading axes (clipped into range)."""
    if not frame_shape:
        return 0
    idx = [min(max(int(i), 0), int(n) - 1) for i, n in zip(frame_index, frame_shape)]
    return int(np.ravel_multi_index(idx, tuple(frame_shape)))


def _chunk_codecs(lvp: LvpFile) -> list[str]:
    table = lvp.header.get("codecs") or []
    return [str(table[rec.codec]["id"]) for rec in lvp._reader.records]


def _get_slice(source, i: int, frames: tuple[int, ...]) -> np.ndarray:
    if isinstance(source, LvpFile):
        return source.read_slice(i)
    if not frames:
        return np.asarray(source)
    return np.asarray(source[np.unravel_index(i, frames)])


DECODE_SHARE = 0.25  # of a .lvp slice's Inspect time, its decode (``iter_analyse``)


def iter_analyse(
    source,
    model: LoadedModel | None,
    *,
    rgb: bool = False,
    indices: Sequence[int] | None = None,
    maps: bool = True,
    lvp: LvpFile | None = None,
    ablation: bool = False,
) -> Generator[Progress, None, Analysis]:
    """Analyse slices of ``source`` (an array-like (frames..., rows, cols[, 3]), e.g. a napari layer's
    numpy or dask data, or an ``LvpFile``), yielding ``Progress('inspect', done, total)``.

    ``indices``: flat slice indices (default: all). ``maps``: keep every analysed slice's maps
    (False: totals only). ``model`` None: no estimates and no maps, only the real chunk bits of a
    .lvp (``source`` itself or ``lvp``: the file a layer was opened from). ``ablation``: each slice
    estimated again with every latent channel at its most frequent value (``channel_mode``; twice
    the time), so ``Analysis.latent_saved_bits`` says what the latent pays for. Returns an ``Analysis``.
    """
    if isinstance(source, LvpFile):
        lvp = source
        rgb = source.rgb
        shape = source.shape
    else:
        shape = source.shape
    frames, sshape = slice_layout(shape, rgb)
    n = int(np.prod(frames, dtype=np.int64))
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    for i in idx:
        if not 0 <= i < n:
            raise InputError(f"slice {i} out of range 0..{n - 1}")
    chunk_bits = chunk_codecs = file_model = None
    if lvp is not None:
        if len(lvp) != n:
            raise InputError(f"{lvp.name}: {len(lvp)} slices, the image has {n}")
        chunk_bits = np.array([8 * lvp.chunk_bytes(i) for i in range(n)], dtype=np.float64)
        chunk_codecs = _chunk_codecs(lvp)
        file_model = lvp.header.get("model")
    result = Analysis(
        frame_shape=tuple(frames), slice_shape=sshape, rgb=rgb, indices=idx, pixel_bits=None, latent_bits=None,
        chunk_bits=chunk_bits, chunk_codecs=chunk_codecs, file_model=file_model,
        model_path=None if model is None else model.path, model_sha256=None if model is None else model.sha256,
    )
    if model is None:
        yield Progress("inspect", 1, 1)
        return result
    pix, lat, abl = np.zeros(len(idx)), np.zeros(len(idx)), np.zeros(len(idx))
    yield Progress("inspect", 0, len(idx))
    from .compressor import REFERENCE_RUN

    last = None  # (index, slice) read last: the reference of the next index
    # a .lvp's slice is decoded, then analysed, each ticking its own 0 to 1: the bar's share of the slice
    # in two parts, so it never goes back (a 512 x 512 CT slice: decode 0.2 s, analysis 0.6 s)
    read_share = DECODE_SHARE if isinstance(source, LvpFile) else 0.0
    for k, i in enumerate(idx):
        ref, kept = None, False
        if i % REFERENCE_RUN:  # as the writer codes it
            kept = last is not None and last[0] == i - 1
            try:
                with span(0.0, read_share / 2):  # the slice before, decoded first where it was not the last one
                    ref = last[1] if kept else _get_slice(source, i - 1, tuple(frames))
            except DamagedError:  # a damaged slice before: this one is still mapped if its chunk does not need it
                if lvp is None or lvp.needs_previous(i):
                    raise
        with span(read_share / 2 if i % REFERENCE_RUN and not kept else 0.0, read_share):
            x = _get_slice(source, i, tuple(frames))
        last = (i, x)
        with span(read_share, 1.0):
            m = analyse_slice(x, model, rgb=rgb, index=i, reference=ref, ablation=ablation)
        pix[k], lat[k] = m.pixel_bits_total, m.latent_bits_total
        abl[k] = m.ablated_bits_total if ablation else 0.0
        if maps:
            result.maps.append(m)
        yield Progress("inspect", k + 1, len(idx))
    result.pixel_bits, result.latent_bits = pix, lat
    result.ablated_bits = abl if ablation else None
    return result


# one core's seconds per pixel to analyse a slice (a 512 x 512 CT slice: 0.66 s), for ``slice_pool.workers``
ANALYSE_S = 2.5e-6


def analysed_runs(source, model: LoadedModel, idx: Sequence[int], *, rgb: bool = False, lvp: LvpFile | None = None,
                  ablation: bool = False, workers: int | None = 1):
    """The slices ``idx`` of ``source`` analysed as ``iter_analyse`` does, in runs of consecutive slices,
    by ``slice_pool`` worker processes where ``workers`` (a number, or None: automatic) allows more
    than one and the model runs on the CPU. Yields (Analysis of the run's slices or None, {slice:
    DamagedError} of those skipped, slices done) in order: a damaged slice (or one whose reference is)
    is skipped and named, the others analysed. A worker reads a .lvp layer's slices from the file
    (``lvp``), and is handed an array layer's (the run's slices and the one before). Each run is
    analysed in one pass where none of its slices is damaged, each slice read once."""
    from . import slice_pool
    from .compressor import REFERENCE_RUN

    idx = [int(i) for i in idx]
    frames, sshape = slice_layout(source.shape, rgb)
    n = slice_pool.workers(len(idx), workers, work=len(idx) * ANALYSE_S * sshape[0] * sshape[1])
    # a worker loads the weights from their file, and reads a .lvp from its file (an in-memory one's bytes
    # would travel whole with every run)
    in_memory = lvp is not None and not isinstance(lvp._source, (str, os.PathLike))
    if model.device != "cpu" or model.path is None or not frames or in_memory:
        n = 1
    if n <= 1:
        for i in idx:
            part, skipped = _analyse_run(None, [i], model, source, rgb, lvp, ablation)
            yield part, skipped, 1
        return
    # runs of consecutive slices, short enough that every worker gets several; those that start where
    # the writer starts afresh (every REFERENCE_RUN-th slice) need no slice before them
    size = 1 << max(0, min(REFERENCE_RUN, -(-len(idx) // (4 * n))).bit_length() - 1)
    runs, run = [], []
    for i in idx:
        if run and (i != run[-1] + 1 or i % size == 0):
            runs.append(run)
            run = []
        run.append(i)
    runs.append(run)
    # made as the pool takes them: an array layer's slices are read a window at a time, not all at once
    tasks = ((_run_source(source, lvp, r, frames), r, model.path, None, rgb, None, ablation) for r in runs)
    for (part, skipped), r in zip(slice_pool.ordered(_analyse_run, tasks, n), runs):
        yield part, skipped, len(r)


class _Slices:
    """Some slices of an array layer, as ``_get_slice`` reads them (by their place in the whole), for
    a worker: the array itself would travel whole with every task."""

    def __init__(self, shape: tuple, frames: tuple, slices: dict):
        self.shape, self.frames, self.slices = shape, frames, slices

    def __getitem__(self, where) -> np.ndarray:
        return self.slices[int(np.ravel_multi_index(where, self.frames))]


def _run_source(source, lvp: LvpFile | None, run: list, frames: tuple):
    """What a worker reads run ``run``'s slices from: the .lvp (a file on disk), else the run's slices of the
    array layer and the one before them."""
    if lvp is not None:
        array_hash = lvp.header.get("array_hash")
        return ("lvp", lvp._source, lvp.name, array_hash, limits.state(array_hash), lvp._reader.stamp)
    want = {i for i in run} | ({run[0] - 1} if run[0] > 0 else set())
    return ("slices", _Slices(source.shape, frames, {i: _get_slice(source, i, frames) for i in sorted(want)}))


def _analyse_run(where, run: list, model, source, rgb: bool, lvp: LvpFile | None, ablation: bool):
    """Slices ``run`` analysed (here, or in a worker: ``where`` from ``_run_source`` and ``model`` the
    weights' path) -> (their Analysis, None if all were damaged; {slice: DamagedError} skipped). The
    whole run in one pass (each slice read once, the reference of the next); where a slice is
    damaged, slice by slice, as the serial path."""
    if where is not None:
        model = load_model(model, device="cpu")
        if where[0] == "lvp":
            _, path, name, array_hash, state, stamp = where
            limits.adopt(array_hash, state)
            source = lvp = LvpFile.same_file(path, name, stamp)  # the file the layer shows, not one put in its place
        else:
            source = where[1]
    # a run of several slices is counted when it ends: its slices' ticks (0 to 100% each, one after the other)
    # are no share of the slice a bar shows next, which slid back every second (a Cancel still stops them)
    try:
        with unplaced() if len(run) > 1 else contextlib.nullcontext():
            return drive(iter_analyse(source, model, rgb=rgb, indices=run, lvp=lvp, ablation=ablation)), {}
    except DamagedError as e:
        if len(run) == 1:
            return None, {run[0]: e}
    res, skipped = None, {}
    with unplaced():  # slice by slice after a damaged one: still the run's, counted when it ends
        for i in run:
            part, bad = _analyse_run(None, [i], model, source, rgb, lvp, ablation)
            skipped.update(bad)
            if part is not None:
                res = part if res is None else merge(res, part)
    return res, skipped


def merge(into: Analysis, part: Analysis) -> Analysis:
    """``part``'s slices added after ``into``'s (the same source and model): ``into``, extended."""
    into.indices = list(into.indices) + list(part.indices)
    into.pixel_bits = np.concatenate([into.pixel_bits, part.pixel_bits])
    into.latent_bits = np.concatenate([into.latent_bits, part.latent_bits])
    into.maps += part.maps
    if into.ablated_bits is not None:
        into.ablated_bits = np.concatenate([into.ablated_bits, part.ablated_bits])
    return into


def iter_slice_totals(source, model: LoadedModel | None, *, rgb: bool = False,
                      lvp: LvpFile | None = None) -> Generator[Progress, None, Analysis]:
    """Per-slice totals (estimated bits, and real chunk bits for a .lvp) of every slice; no maps kept."""
    return (yield from iter_analyse(source, model, rgb=rgb, lvp=lvp, maps=False))


__all__ = [
    "BLOCK",
    "MAPS",
    "Analysis",
    "LoadedModel",
    "SliceMaps",
    "analyse_slice",
    "analysed_runs",
    "block_pixel_counts",
    "default_model_path",
    "flat_index",
    "iter_analyse",
    "iter_slice_totals",
    "load_model",
    "merge",
    "slice_layout",
    "tile_channels",
    "to_image_grid",
]
