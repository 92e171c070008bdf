"""The chart of ``lvpnet bench --plot``: bits per sample per input per codec, as grouped bars.

matplotlib (Agg backend) is imported only here, only when a chart is asked for.
The PNG is written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .atomic import atomic_path, check_writable
from .errors import InputError


def check_can_plot(path: str | os.PathLike) -> None:
    """Refuse ``--plot`` before a bench's long work: an output that cannot be written, or no matplotlib
    (an extra: servers install the codec alone). Said after the bench, its results were lost with it."""
    check_writable(path)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install matplotlib (or, in the clone, pip install '.[napari]')") from None


def plot_bits(rep: dict[str, Any], path: str | os.PathLike, title: str | None = None) -> None:
    """Grouped bars: one group per input plus the total, one bar per codec (lvpnet first)."""
    check_can_plot(path)
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    ids = list(rep["classical_codecs"])
    used = rep["codec"] if rep["codec"] != "default" else ", ".join(rep.get("codecs_used") or {}) or "default"
    series = [(f"lvpnet ({used})", lambda r: r["lvpnet"]["bits_per_sample"])]
    for cid in ids:
        series.append((rep["classical_codecs"][cid], lambda r, c=cid: r["classical"].get(c, {}).get("bits_per_sample")))
    labels = [Path(r["input"]).name.removesuffix(".npz") for r in rep["inputs"]]
    groups = list(rep["inputs"])
    t = rep["totals"]
    if len(groups) > 1:
        if 0 < t["comparable_inputs"] < t["inputs"]:  # every bar over the same inputs: those all codecs coded
            labels.append(f"total ({t['comparable_inputs']} of {t['inputs']} inputs)")
            groups.append({**t, "lvpnet": {"bits_per_sample": t["lvpnet_bits_per_sample_comparable"]}})
        else:
            labels.append("total")
            groups.append(t)

    n_groups, n_bars = len(groups), len(series)
    width = 0.8 / n_bars
    fig = Figure(figsize=(min(16.0, max(6.0, 0.85 * n_groups + 2.5)), 5.5), dpi=110)
    ax = fig.add_subplot()
    colours = ["#d62728", "#1f77b4", "#aec7e8", "#2ca02c", "#ff7f0e", "#ffbb78", "#9467bd"]
    for k, (name, get) in enumerate(series):
        xs, ys = [], []
        for g, rec in enumerate(groups):
            y = get(rec)
            if y is not None:
                xs.append(g - 0.4 + width * (k + 0.5))
                ys.append(y)
        ax.bar(xs, ys, width=width, label=name, color=colours[k % len(colours)],
               edgecolor="black" if k == 0 else "none", linewidth=0.5)
    top = max((get(rec) or 0.0) for _, get in series for rec in groups)
    ax.set_ylim(0, max(top, 1e-3) * 1.3)  # room for the legend
    ax.set_xticks(range(n_groups))
    ax.set_xticklabels(labels, rotation=35 if n_groups > 3 else 0, ha="right" if n_groups > 3 else "center",
                       fontsize=8)
    ax.set_ylabel("bits per sample (lower is better)")
    ax.set_title(title or f"lvpnet {rep['lvpnet_version']}: bits per sample, real file bytes")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, ncol=min(n_bars, 4))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
