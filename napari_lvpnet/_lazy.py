"""Slices of a .lvp decoded off the main thread, for a napari layer that never waits.

A learned slice takes one to two seconds to decode on a small CPU; napari slices a layer on
the main thread, so decoding there freezes the window at every step. Here:

- ``SliceLoader`` owns one ``LvpFile`` and one background thread. The slices napari asked
  for last are decoded first (a newer request replaces an older one), then their neighbours
  (prefetch). Decoded slices stay in an LRU cache bounded in bytes; the slices on screen are
  never evicted. A slice that fails its checks is remembered with its error and never shown.
- ``LazySlices`` is the array napari holds: napari's own slicing gets at once the cached slices
  and a blank placeholder (the lowest value of the window) for the others (``view``). Any other
  indexing (a script, the console, dask), ``np.asarray`` and ``read(i)`` decode what is missing and
  wait: they give the exact data (``exact``).
- ``LayerFeed`` lives on the main thread: when a slice on screen arrives it refreshes the
  layer, names a damaged slice in a notification and on the canvas, sets the contrast from
  the first slice when the file gave no window, and says "decoding ..." in the status bar when
  a slice takes longer than a moment.

One lock serialises every decode of the file: ``LvpFile`` keeps the last slice decoded as the
reference of the next (bitstream 8), and two decodes at once would only share two cores.
"""

from __future__ import annotations

import atexit
import sys
import textwrap
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from lvpnet import LvpFile
from lvpnet.errors import DamagedError, LimitError, LvpnetError
from lvpnet.progress import Cancelled, also
from lvpnet.terminal import duration

from ._maps import slice_words, slider_labels
from ._messages import damaged_slice, error_slice, first_line, notification

CACHE_BYTES = 256 * 2**20  # decoded slices kept besides those on screen (512 slices of 512 x 512 int16)
PREFETCH = 2  # neighbours decoded ahead on each side of the slices on screen
PENDING_NOTICE_MS = 300  # a slice still decoding after this long gets a "decoding ..." line on the canvas
CANVAS_LINE = 32  # characters a line of the canvas text holds before it wraps
REFRESH_EVERY_S = 0.5  # a request of many slices (3-D view) is redrawn at most this often while it fills
#: the modules of napari's slicing (0.5 on, and before): they get placeholders, any other caller exact values
NAPARI_SLICING = frozenset({"napari.layers._scalar_field._slice", "napari.layers.image._slice"})
COSTLY_REDRAW_S = 0.25  # a partial redraw that took longer: the rest of that request is drawn once, complete


class SliceLoader:
    """Decodes slices of one .lvp on a background thread, newest request first, and caches them."""

    live: weakref.WeakSet[SliceLoader] = weakref.WeakSet()  # for the clean stop at exit

    def __init__(self, lvp: LvpFile, *, cache_bytes: int = CACHE_BYTES, prefetch: int = PREFETCH,
                 workers: int | None = 1):
        self.lvp = lvp
        self.workers = workers  # for a whole volume asked at once (``LvpFile.read_slices``)
        self.n = len(lvp)
        slice_bytes = max(int(np.prod(lvp.slice_shape)) * lvp.dtype.itemsize, 1)
        self.capacity = max(cache_bytes // slice_bytes, 1)
        self.prefetch = prefetch
        self.bulk = 2 * prefetch + 1  # a request of more slices (a 3-D view's volume) is read in runs (iter_read)
        self.failed: dict[int, LvpnetError] = {}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.arrivals = 0  # slices decoded or failed so far; ``arrived_as[i]``: the count when slice i last did
        self.arrived_as: dict[int, int] = {}
        self._wanted: tuple[int, ...] = ()
        self._file_lock = threading.Lock()
        self._single = 0  # single slices waiting for the file (``_decode``), served before a run's next slice
        self._cond = threading.Condition()
        self._listeners: list[Callable[[int], None]] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        SliceLoader.live.add(self)

    # ---------------------------------------------------------------- main-thread side
    def add_listener(self, fn: Callable[[int], None]) -> None:
        """``fn(i)`` is called on the loader's thread when slice ``i`` is decoded or has failed."""
        self._listeners.append(fn)

    def get(self, i: int) -> np.ndarray | None:
        """The decoded slice if it is cached (never waits)."""
        with self._cond:
            s = self._cache.get(i)
            if s is not None:
                self._cache.move_to_end(i)
            return s

    def resolved(self, i: int) -> bool:
        with self._cond:
            return i in self._cache or i in self.failed

    def want(self, indices: Sequence[int]) -> None:
        """Decode these first (they replace the previous request), then their neighbours."""
        with self._cond:
            self._wanted = tuple(dict.fromkeys(int(i) for i in indices))
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name=f"lvpnet decode {self.lvp.name}", daemon=True)
                self._thread.start()
            self._cond.notify()

    def read(self, i: int) -> np.ndarray:
        """Slice ``i``, decoded on the calling thread if needed; raises its error if it is damaged."""
        s = self.get(i)
        if s is None:
            self._decode(i)
            s = self.get(i)
        if s is None:
            raise self.failed[i]
        return s

    def _stop_if_closed(self, fraction) -> None:
        """A tick of the learned codec's walk (``progress.within_slice``): a closed loader (the viewer closing,
        the interpreter exiting) stops at the next step, not after the run of slices under way (seconds)."""
        if self._closed:
            raise Cancelled

    def release(self) -> None:
        """Nothing is on screen any more (the layer left its viewer): stop decoding and drop the cache.
        Showing the data again asks for its slices again, so a layer put back decodes them again."""
        with self._cond:
            self._wanted = ()
            self._cache.clear()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    # ---------------------------------------------------------------- loader thread
    def _pending(self, i: int) -> bool:
        return i not in self._cache and i not in self.failed

    def _next_job(self) -> int | None:
        """The next slice to decode (called with the condition held), or None."""
        for i in self._wanted:
            if self._pending(i):
                return i
        spare = self.capacity - sum(1 for i in self._cache if i not in self._wanted)
        if spare <= 0 or len(self._wanted) > self.bulk:  # a whole volume asked: nothing to prefetch
            return None
        for d in range(1, self.prefetch + 1):  # i+1 before i-1: reading forward reuses the reference slice
            for i in self._wanted:
                for j in (i + d, i - d):
                    if 0 <= j < self.n and self._pending(j):
                        return j
        return None

    def _run(self) -> None:
        try:
            self._serve()
        except Cancelled:  # closed in the middle of a slice (``_stop_if_closed``)
            return

    def _serve(self) -> None:
        while True:
            with self._cond:
                job = self._next_job()
                while job is None and not self._closed:
                    self._cond.wait()
                    job = self._next_job()
                if self._closed:
                    return
                wanted = self._wanted
            if job in wanted and len(wanted) > self.bulk:  # a whole volume (3-D): worker processes, in order
                self._decode_volume(wanted)
            else:
                self._decode(job)

    def _decode(self, i: int) -> None:
        with self._cond:
            self._single += 1  # a slice someone waits for: runs of a whole volume let it in first (iter_read)
        try:
            with self._file_lock:
                if not self._pending(i) or self._closed:
                    return
                try:
                    with also(self._stop_if_closed):
                        s = self.lvp.read_slice(i)
                except Exception as e:  # noqa: BLE001 - damage, or anything else (a library's error): the slice
                    self._keep(i, error=e)  # says so, and this thread lives on to decode the others (it died,
                else:  # leaving the layer blank)
                    self._keep(i, s)
        finally:
            with self._cond:
                self._single -= 1
        self._tell(i)

    def iter_read(self, indices: Sequence[int], until: Callable[[], bool] | None = None
                  ) -> Iterator[tuple[int, np.ndarray]]:
        """``(i, slice)`` for each of ``indices``, in their order: cached slices as they are, each run of
        consecutive missing ones decoded by ``LvpFile.read_slices`` with this loader's ``workers`` (a
        whole volume: one core's minutes spread over the machine's cores) and cached. The file's lock is
        taken slice by slice, so a 2-D view's slice or another reader waits one slice at most; a slice
        another reader decoded meanwhile starts a new run after it (never decoded twice over a volume).
        A damaged slice raises its error at its turn (kept as failed first, so a retry goes past it);
        any other error (a setting, the workers) is raised as it is, blaming no slice. ``until()`` true
        ends the walk early (the request it served has changed); a closed loader raises."""
        indices = [int(i) for i in indices]
        k = 0
        while k < len(indices):
            if self._closed:
                raise LvpnetError(f"{self.lvp.name}: the file was closed while its slices were read")
            if until is not None and until():
                return
            i = indices[k]
            s = self.get(i)
            if s is not None:
                yield i, s
                k += 1
                continue
            if i in self.failed:
                raise self.failed[i]
            e = k  # the run of missing slices that follow one another from here
            while e + 1 < len(indices) and indices[e + 1] == indices[e] + 1 and self._pending(indices[e + 1]):
                e += 1
            slices = self.lvp.read_slices(i, indices[e] + 1, workers=self.workers)
            try:
                for j in range(i, indices[e] + 1):
                    if self._closed or (until is not None and until()) or not self._pending(j):
                        break  # to the top: closed, done, or a slice another reader decoded (a new run after it)
                    while self._single and not self._closed:  # a lock is not fair: a 2-D slice waited for
                        time.sleep(0.002)  # whole runs; it goes first
                    ahead = None  # a later slice whose damage came first
                    with self._file_lock:
                        if not self._pending(j):  # decoded by the reader that held the lock: a new run after it
                            break
                        try:
                            with also(self._stop_if_closed):
                                s = next(slices)
                        except (DamagedError, LimitError) as err:  # this slice's own damage: said as its own
                            named = error_slice(err, self.lvp.name)
                            if named is not None and j < named <= indices[e] and self._pending(named):
                                # a later slice's chunk, read ahead (chains decoded in lanes): that slice's
                                # damage, not this one's; the run ends before it and starts again here
                                self._keep(named, error=err)
                                ahead = named
                            else:
                                self._keep(j, error=err)
                            s = None
                        else:
                            self._keep(j, s)
                    if ahead is not None:
                        self._tell(ahead)
                        break
                    self._tell(j)  # not under the lock: a listener may be a Qt slot on this thread
                    if s is None:
                        raise self.failed[j]
                    yield j, s
                    k += 1
            finally:
                slices.close()  # the slices queued for the workers are dropped

    def _decode_volume(self, wanted: tuple[int, ...]) -> None:
        """The loader thread's work for a whole volume asked at once (the 3-D view): ``iter_read`` until
        every slice of it is decoded or has failed, or the request changes. An error that is no slice's
        own (the workers could not run, a setting) leaves the slices to be read one at a time here, each
        failing on its own as a 2-D view's do."""
        todo = sorted(i for i in wanted if self._pending(i))
        while todo and not self._closed:
            failures = len(self.failed)
            try:
                for _ in self.iter_read(todo, until=lambda: self._wanted != wanted):
                    pass
                return
            except Exception:  # noqa: BLE001 - a damaged slice is kept as failed (iter_read): the others go on
                if len(self.failed) == failures:
                    for i in todo:
                        if self._closed or self._wanted != wanted:
                            return
                        self._decode(i)
                    return
                todo = [i for i in todo if self._pending(i)]

    def _keep(self, i: int, s: np.ndarray | None = None, error: Exception | None = None) -> None:
        """Slice ``i`` decoded (cached, read-only: shared with every reader) or failed (its error kept)."""
        with self._cond:
            if error is not None:
                self.failed[i] = error if isinstance(error, LvpnetError) else LvpnetError(
                    f"{self.lvp.name}: slice {i}: could not be decoded ({type(error).__name__}: {error})")
            else:
                s.flags.writeable = False
                self._cache[i] = s
                self._evict()
            self.arrivals += 1
            self.arrived_as[i] = self.arrivals

    def _tell(self, i: int) -> None:
        if not self._closed:
            for fn in list(self._listeners):
                fn(i)

    def _evict(self) -> None:
        extra = len(self._cache) - self.capacity - len(self._wanted)
        for i in list(self._cache):
            if extra <= 0:
                break
            if i not in self._wanted:
                del self._cache[i]
                extra -= 1


def _expand(key, ndim: int) -> tuple:
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(n for n, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1 :]
    return key + (slice(None),) * (ndim - len(key))


class LazySlices:
    """The array a .lvp layer holds: indexing never waits (placeholders for slices not decoded yet)."""

    def __init__(self, loader: SliceLoader, fill):
        lvp = loader.lvp
        self.loader = loader
        self.shape = tuple(lvp.shape)
        self.dtype = lvp.dtype
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.fill = fill
        self.frame_shape = tuple(lvp.frame_shape)
        self.slice_shape = tuple(lvp.slice_shape)
        self._flat = np.arange(loader.n).reshape(self.frame_shape)
        self.last_request: tuple[int, ...] = ()  # flat indices of the last indexing (what napari shows)
        self._on_request: Callable[[], None] | None = None
        self.feed: LayerFeed | None = None  # set by the reader: the layer's main-thread side
        weakref.finalize(self, loader.close)

    @property
    def name(self) -> str:
        return self.loader.lvp.name

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        """napari's drawing (its slicing code) gets ``view``: never waits. Any other caller (a script's
        ``layer.data[2:5]``, the console, dask) gets ``exact``: placeholders taken for data were saved as a
        "lossless" file of zeros."""
        if sys._getframe(1).f_globals.get("__name__", "") in NAPARI_SLICING:
            return self.view(key)
        return self.exact(key)

    def __deepcopy__(self, memo) -> LazySlices:
        """napari's Duplicate Layer deep-copies the data (a lock cannot be): the copy shares this file's
        slices, as a read-only view of the same file should (``LayerFeed`` redraws every layer showing it)."""
        return self

    def _flat_of(self, key) -> tuple[tuple, np.ndarray, list[int]]:
        key = _expand(key, self.ndim)
        nf = len(self.frame_shape)
        idx = self._flat[key[:nf]] if nf else np.asarray(0)
        return key[nf:], idx, [int(i) for i in np.ravel(idx)]

    def exact(self, key) -> np.ndarray:
        """The values at ``key``, exact: the slices not decoded yet are decoded here (worker processes for
        many) and waited for; a damaged one raises its error."""
        inner, idx, flat = self._flat_of(key)
        at: dict[int, list[int]] = {}  # slice -> its rows in the result (a key may repeat or reorder slices)
        for k, i in enumerate(flat):
            at.setdefault(i, []).append(k)
        out = np.empty(idx.shape + self.slice_shape, self.dtype)
        rows = out.reshape((-1,) + self.slice_shape)
        for i, s in self.loader.iter_read(sorted(at)):
            rows[at[i]] = s
        return out[(slice(None),) * idx.ndim + inner]

    def view(self, key) -> np.ndarray:
        """What napari draws at ``key``, at once: the decoded slices, and a blank placeholder (``fill``) for
        the others, which are asked for (``SliceLoader.want``: the canvas is redrawn as they arrive)."""
        inner, idx, flat = self._flat_of(key)
        self.last_request = tuple(flat)
        feed = self.feed
        if feed is not None and feed._released and feed.layers():  # shown again: undone, or in another viewer
            feed._released = False
        if feed is None or not feed._released:  # a removed layer sliced by napari asks for nothing
            self.loader.want(flat)
        out = np.full(idx.shape + self.slice_shape, self.fill, self.dtype)
        rows = out.reshape((-1,) + self.slice_shape)
        for k, i in enumerate(flat):
            s = self.loader.get(i)
            if s is not None:
                rows[k] = s
        if self._on_request is not None:
            self._on_request()
        return out[(slice(None),) * idx.ndim + inner]

    def read(self, i: int) -> np.ndarray:
        """Slice ``i`` (flat index), exact: decodes and waits if needed, raises if it is damaged."""
        return self.loader.read(i)

    def __array__(self, dtype=None, copy=None):
        out = self.exact(Ellipsis)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"LazySlices({self.name!r}, shape={self.shape}, dtype={self.dtype})"


_BRIDGE = None


def _bridge():
    """One QObject for the life of the process, made on the main thread: a signal emitted on a loader
    thread runs its slot on the main thread. Never deleted, so no thread emits into a dead object."""
    global _BRIDGE
    if _BRIDGE is None:
        from qtpy.QtCore import QObject, Signal

        class _Bridge(QObject):
            arrived = Signal(object, int)  # (weakref to a LayerFeed, slice index)
            requested = Signal(object)

        _BRIDGE = _Bridge()
        _BRIDGE.arrived.connect(lambda ref, i: (feed := ref()) is not None and feed._on_arrived(i))
        _BRIDGE.requested.connect(lambda ref: (feed := ref()) is not None and feed._on_shown())
    return _BRIDGE


class LayerFeed:
    """Main-thread side of a lazy .lvp layer: redraws, notifications, canvas text, first contrast."""

    def __init__(self, layer, data: LazySlices, contrast_from_first: Callable[[np.ndarray], list | tuple | None] | None):
        self._layer = weakref.ref(layer)
        self.data = data
        self._contrast_from_first = contrast_from_first
        self._notified: set[int] = set()
        self._canvas_text = ""
        self._status_text = ""
        self._last_refresh = 0.0
        self._refresh_gap = REFRESH_EVERY_S
        self._released = False  # the layer left its viewer (``release``)
        self._costly: tuple[int, ...] = ()  # a request whose partial redraw froze the window: drawn once complete
        self._filling: tuple[tuple[int, ...], float, int] | None = None  # (request, when, resolved then)
        self._drawn_whole: tuple[tuple[int, ...], int] | None = None  # (request, arrivals) at its complete redraw
        bridge, me = _bridge(), weakref.ref(self)
        data.loader.add_listener(lambda i: bridge.arrived.emit(me, i))
        data._on_request = lambda: bridge.requested.emit(me)
        for i in range(data.loader.n):  # a slice decoded before the layer existed gives the contrast now
            if data.loader.get(i) is not None:
                self._take_contrast(layer, i)
                break

    def _take_contrast(self, layer, i: int) -> None:
        first = self.data.loader.get(i) if self._contrast_from_first is not None else None
        if first is None:
            return
        got = self._contrast_from_first(first)
        self._contrast_from_first = None
        if got is not None:  # limits, or (limits, the slider's range)
            limits, span = got if isinstance(got, tuple) else (got, got)
            layer.contrast_limits_range = span
            layer.contrast_limits = limits

    def _on_arrived(self, i: int) -> None:
        layer = self._layer()
        if layer is None or self._released:  # a refresh would ask for its slices again
            return
        loader = self.data.loader
        shown = self.data.last_request
        self._take_contrast(layer, i)
        if i not in shown:
            return
        complete = all(loader.resolved(j) for j in shown)
        if complete and self._drawn_whole is not None and self._drawn_whole[0] == shown \
                and loader.arrived_as.get(i, 0) <= self._drawn_whole[1]:
            # already in the complete volume drawn: slices from worker processes arrive in bursts, queued, and each
            # found the volume complete and redrew it again (25 redraws of 0.2 s: a 5.6 s freeze on 80 slices)
            self._on_shown()
            return
        now = time.monotonic()
        arrivals = loader.arrivals  # read before the redraw reads the slices: a later one redraws again
        partial = shown != self._costly  # partial redraws of this request are cheap enough
        if complete or (partial and now - self._last_refresh > self._refresh_gap):
            for shown_in in self.layers() or [layer]:  # napari's duplicates of the layer share its data
                shown_in.refresh()
            took = time.monotonic() - now
            self._last_refresh = time.monotonic()
            # a 3-D view redraws the whole volume each time (3-9 s for 300 slices in software GL): the next
            # partial redraw waits four times as long as this one took, so the window is mostly free; and
            # after one that froze the window noticeably, only the complete volume is drawn (the status bar
            # counts the slices meanwhile): 25 freezes of 1-6 s filled a 183-slice volume
            self._refresh_gap = max(REFRESH_EVERY_S, 4 * took)
            if took > COSTLY_REDRAW_S and not complete:
                self._costly = shown
            if complete:
                self._drawn_whole = (shown, arrivals)
        self._on_shown()

    def _on_shown(self) -> None:
        """The slices on screen changed or one arrived: name damage at once, say "decoding" after a moment."""
        loader = self.data.loader
        for i in self.data.last_request:
            error = loader.failed.get(i)
            if error is None:
                continue
            # once per damaged slice: the slices after it that need it (coded against the one before them)
            # fail with its error, and scrolling through them raised the same notification at every step
            damaged = damaged_slice(error, loader.lvp.name, i)
            if damaged not in self._notified:
                self._notified.add(damaged)
                from napari.utils import notifications

                notifications.show_error(notification(error, loader.lvp.name, self.words, shown=i))
        self.update_canvas_text()
        if any(not loader.resolved(i) for i in self.data.last_request):
            from qtpy.QtCore import QTimer

            QTimer.singleShot(PENDING_NOTICE_MS, lambda: self.update_canvas_text(pending=True))

    def _watch(self, viewer) -> None:
        """Clear this layer's canvas and status text when it leaves ``viewer``: the damage line stayed on an
        empty canvas, and over the next file opened."""
        if getattr(self, "_watched", None) is viewer:
            return
        self._watched = viewer
        me = weakref.ref(self)

        def removed(event) -> None:  # also as the viewer closes: it removes every layer
            feed = me()
            if feed is not None and event.value is feed._layer():
                feed.clear_text(viewer)
            if feed is not None and getattr(event.value, "data", None) is feed.data:  # it, or a duplicate
                feed.release()

        viewer.layers.events.removed.connect(removed)

    def layers(self) -> list:
        """The layers in any viewer that show this data: the layer, napari's duplicates of it."""
        from napari import Viewer

        return [layer for v in list(Viewer._instances) for layer in v.layers if layer.data is self.data]

    def release(self) -> None:
        """The layer left its viewer: stop decoding and drop the cache (a 3-D view's volume went on decoding
        for minutes, unseen), unless a layer in a viewer still shows the same data (a duplicate, or the layer
        moved to another viewer). Shown again later, it asks for its slices again (``LazySlices.view``)."""
        if self.layers():
            return
        self._released = True  # napari may still slice the removed layer: that asks for nothing
        self.data.loader.release()

    def clear_text(self, viewer) -> None:
        """Take this layer's lines off ``viewer``'s canvas and status bar (someone else's stay)."""
        overlay = viewer.canvas.overlays.text
        if self._canvas_text and overlay.text == self._canvas_text:
            overlay.text, overlay.visible = "", False
        self._canvas_text = ""
        if self._status_text and viewer.status == self._status_text:
            viewer.status = ""
        self._status_text = ""

    def _viewer(self):
        from napari import Viewer

        layer = self._layer()
        return next((v for v in list(Viewer._instances) if layer is not None and layer in v.layers), None)

    def words(self, i: int) -> str:
        """Slice ``i`` (the file's flat number) as the viewer's sliders name it: 'time 1, slice 3' on a
        4-D layer, not 'slice 15'."""
        return slice_words(i, self.data.frame_shape, slider_labels(self._layer(), self._viewer()))

    def damage_text(self) -> str:
        """The canvas line for damaged slices on screen ('' when none)."""
        loader, shown = self.data.loader, self.data.last_request
        failed = {i: loader.failed[i] for i in shown if i in loader.failed}
        if not failed:
            return ""
        name = loader.lvp.name
        # a few short lines: the overlay does not wrap, and a narrow canvas cut the file's name off
        if len(failed) == 1:  # a 2-D view: this slice is damaged, or needs one that is
            ((i, error),) = failed.items()
            return textwrap.fill(first_line(error, name, self.words, shown=i), CANVAS_LINE) + "\nshown blank"
        damaged = {}  # the damaged slices themselves, in order; the others only need one of them
        for i, error in failed.items():
            damaged.setdefault(damaged_slice(error, name, i), error)
        first, *others = damaged
        tail = "shown blank"
        if others:
            tail += "; damaged too: " + ", ".join(map(self.words, others[:3])) + (", ..." if len(others) > 3 else "")
        needing = sum(i not in damaged for i in failed)
        if needing:
            tail += f"; blank too: {needing} slice{'s' * (needing > 1)} that need{'s' * (needing == 1)} "
            tail += "it" if len(damaged) == 1 else "them"
        return textwrap.fill(first_line(damaged[first], name, self.words), CANVAS_LINE) + "\n" + textwrap.fill(
            tail, CANVAS_LINE)

    def pending_text(self) -> str:
        """The status-bar line for slices on screen still decoding ('' when none)."""
        loader = self.data.loader
        waiting = [i for i in self.data.last_request if not loader.resolved(i)]
        if not waiting:
            return ""
        file = loader.lvp.name.replace("\\", "/").rsplit("/", 1)[-1]
        shown = self.data.last_request
        if len(waiting) == 1:
            return f"decoding {self.words(waiting[0])} of {file} ..."
        done, now = len(shown) - len(waiting), time.monotonic()
        if self._filling is None or self._filling[0] != shown:  # a new request: its rate from here
            self._filling = (shown, now, done)
        _, since, done_then = self._filling
        left = (f", {duration((now - since) / (done - done_then) * len(waiting))} left"
                if done - done_then >= 2 else "")
        return f"decoding {file}: {done} of {len(shown)} slices{left} ..."

    def update_canvas_text(self, pending: bool = False) -> None:
        """Damage goes on the canvas (it stays while the slice is shown); "decoding ..." goes in the
        status bar, only once a slice has taken a moment (drawing new glyphs on the canvas costs the
        main thread more than a decode should)."""
        layer, viewer = self._layer(), self._viewer()
        if layer is None or viewer is None:
            return
        self._watch(viewer)
        overlay = viewer.canvas.overlays.text
        if overlay.text in ("", self._canvas_text):  # someone else's text: leave it
            text = self.damage_text() if layer.visible else ""
            self._canvas_text = text
            if text:  # where no notification covers it
                overlay.position, overlay.font_size = "top_left", 12
            overlay.text = text
            overlay.visible = bool(text)
        waiting = self.pending_text() if layer.visible else ""
        if waiting and (pending or viewer.status == self._status_text):
            viewer.status = self._status_text = waiting
        elif not waiting and self._status_text and viewer.status == self._status_text:
            viewer.status = self._status_text = ""


@atexit.register
def _stop_loaders() -> None:
    """Let each loader thread finish the slice it is on before the interpreter goes: a thread still
    inside torch at exit aborts the process."""
    for loader in list(SliceLoader.live):
        loader.close()
    for loader in list(SliceLoader.live):
        if loader._thread is not None:
            loader._thread.join(timeout=10)
