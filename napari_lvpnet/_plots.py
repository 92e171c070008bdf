"""The Inspect dock's matplotlib panels (colorbars, bits per slice or per pixel), in napari's theme.

The canvases keep a fixed height and the width the dock gives them; the figure follows the
widget (matplotlib resizes it on Qt's resize event), so every redraw paints the whole widget.
"""

from __future__ import annotations

import numpy as np

from lvpnet import analysis

from ._maps import lead_names

BAR_COLOURS = ["0.65", "C0", "C2", "C4"]
COLORBAR_PX = 52  # height of one colorbar with its title


def theme_colours(viewer) -> tuple[str, str]:
    """(background, text) of the viewer's theme, as napari draws its own docks."""
    from napari.utils.theme import get_theme

    try:
        theme = get_theme(viewer.theme)
        return theme.foreground.as_hex(), theme.text.as_hex()
    except Exception:  # an unknown theme name: napari's default dark
        return "#2e333e", "#f0f1f2"


def _fit(canvas) -> None:
    """The figure exactly the widget's size (what matplotlib does on a resize event, which a
    hidden or unchanged widget does not get): every pixel of the widget is painted."""
    fig, ratio = canvas.figure, canvas.device_pixel_ratio
    fig.set_size_inches(canvas.width() * ratio / fig.dpi, canvas.height() * ratio / fig.dpi, forward=False)


def _style(fig, axes, colours) -> None:
    bg, fg = colours
    fig.set_facecolor(bg)
    for ax in axes:
        ax.set_facecolor(bg)
        ax.tick_params(colors=fg, labelsize=7)
        ax.xaxis.label.set_color(fg)
        ax.yaxis.label.set_color(fg)
        for spine in ax.spines.values():
            spine.set_color(fg)


def draw_colorbars(canvas, items, colours) -> None:
    """``items``: (title, colormap, lo, hi) of each visible map; none hides the panel."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig = canvas.figure
    fig.clear()
    canvas.setVisible(bool(items))
    if not items:
        return
    canvas.setFixedHeight(COLORBAR_PX * len(items))
    _fit(canvas)
    axes = fig.subplots(len(items), 1, squeeze=False)[:, 0]
    for ax, (title, cmap, lo, hi) in zip(axes, items):
        cb = fig.colorbar(ScalarMappable(norm=Normalize(lo, hi), cmap=cmap), cax=ax, orientation="horizontal")
        # a few short ticks: a map of near-zero values (+-0.001) had seven long labels running into each other
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}"))
        cb.set_label(title, fontsize=7, color=colours[1])
        cb.outline.set_edgecolor(colours[1])
    _style(fig, axes, colours)
    canvas.draw_idle()


def _broken_at_gaps(indices, values) -> tuple[np.ndarray, np.ndarray]:
    """The points in slice order with a NaN between two that are not neighbours, so the line does not
    run across slices that were not analysed (damaged, or not asked for)."""
    order = np.argsort(indices)
    x, y = np.asarray(indices, float)[order], np.asarray(values, float)[order]
    gaps = np.flatnonzero(np.diff(x) > 1) + 1
    return np.insert(x, gaps, (x[gaps - 1] + x[gaps]) / 2), np.insert(y, gaps, np.nan)


def draw_plot(canvas, res: analysis.Analysis, colours, labels=None, damaged=()) -> None:
    """Bits per slice (the stored chunks of a .lvp as bars, the estimate as a line), or for one
    analysed slice the histogram of bits per pixel with the slice's mean estimated and stored;
    ``labels``: the layer's axes as the sliders name them (``_maps.slider_labels``); ``damaged``: the
    slices skipped as damaged (or needing one that is), their bars hatched (a bar of its own looked
    like any stored slice's)."""
    from matplotlib.ticker import MaxNLocator

    fig = canvas.figure
    fig.clear()
    _fit(canvas)
    ax = fig.add_subplot()
    px = res.pixels_per_slice
    one_slice = len(res.indices) == 1 and bool(res.maps)
    if one_slice:
        counts, edges = res.histogram()
        ax.stairs(counts, edges, fill=True, color="C1", label="pixels")
        ax.axvline(float(res.estimated_bits[0]) / px, color="C3", lw=1.2, label="estimated, mean")
        if res.chunk_bits is not None:
            stored = float(res.chunk_bits[res.indices[0]]) / px
            ax.axvline(stored, color="C0", lw=1.2, ls="--", label="stored chunk, mean")
        hi = float(np.percentile(np.concatenate([m.pixel_bits.ravel() for m in res.maps]), 99.9))
        ax.set_xlim(0, max(hi, 1e-3))  # the rare very costly pixels would squeeze the bulk into a sliver
        ax.set_xlabel("bits per pixel", fontsize=8)
        ax.set_ylabel("pixels", fontsize=8)
    else:
        x = np.arange(res.n_slices)
        if res.chunk_bits is not None:
            codecs = res.chunk_codecs or ["stored"] * res.n_slices
            for k, cid in enumerate(sorted(set(codecs))):
                sel = np.array([c == cid for c in codecs])
                ax.bar(x[sel], res.chunk_bits[sel] / 1e3, color=BAR_COLOURS[k % len(BAR_COLOURS)],
                       label=f"stored ({cid})")
            bad = np.array(sorted(i for i in damaged if 0 <= i < res.n_slices), int)
            if bad.size:
                ax.bar(bad, res.chunk_bits[bad] / 1e3, color="none", edgecolor="C3", hatch="xxx", lw=1.0,
                       label="not decoded (damaged)")
        if res.has_model and len(res.indices):
            xs, ys = _broken_at_gaps(res.indices, res.estimated_bits / 1e3)
            ax.plot(xs, ys, "o-", ms=3, color="C3", label="estimated")
        ax.margins(y=0.1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # slices are whole: no tick at 0.5
        if res.n_slices == 1:  # one bar: its one tick (the locator gave -0.4 ... 0.4 there)
            ax.set_xticks([0])
            ax.set_xlim(-1, 1)
        frames = tuple(getattr(res, "frame_shape", ()) or ())
        # a 4-D layer's slices in one row: said how the sliders' numbers make the plot's, and each of the outer
        # axis's runs marked off and named ('time 1') where there are few enough to read
        if len(frames) <= 1:
            ax.set_xlabel("slice", fontsize=8)
        else:
            *outer, inner = lead_names(frames, labels)
            ax.set_xlabel(f"{inner} over every {', '.join(outer)} ({' x '.join(outer)} x {frames[-1]} + {inner})",
                          fontsize=8)
            runs = res.n_slices // frames[-1]
            if len(frames) == 2 and 1 < runs <= 12:
                for r in range(runs):
                    if r:
                        ax.axvline(r * frames[-1] - 0.5, color=colours[1], lw=0.6, ls=":", alpha=0.6)
                    ax.text(r * frames[-1] - 0.4, 1.0, f"{outer[0]} {r}", transform=ax.get_xaxis_transform(),
                            fontsize=7, va="top", color=colours[1])
        ax.set_ylabel("kbit per slice", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # above the axes, never over the bars, and the layout makes room for it
        leg = fig.legend(handles, labels, fontsize=7, loc="outside upper center", ncol=3, frameon=False)
        for text in leg.get_texts():
            text.set_color(colours[1])
    _style(fig, [ax], colours)
    canvas.setVisible(True)
    canvas.draw_idle()
