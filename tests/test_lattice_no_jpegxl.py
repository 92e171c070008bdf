"""An imagecodecs without JPEG-XL (built without it, or not installed): the base lattice (bitstream 7
and later) cannot be coded or read. That is the install's fault, not the file's: an ``InputError``
naming what is missing, which ``lvpfile`` passes on as such (exit 2), never "damaged" (exit 1)."""

import numpy as np
import pytest

from lvpnet.codecs import lvpnet_base
from lvpnet.codecs.lvpnet_codec import LVPNetCodec
from lvpnet.coding import lattice_estimate
from lvpnet.errors import InputError

imagecodecs = pytest.importorskip("imagecodecs")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gone(*_a, **_k):
    raise imagecodecs.DelayedImportError("jpegxl")  # what imagecodecs raises for a codec it lacks


def _plane():
    yy, xx = np.mgrid[:24, :28]
    return ((yy * 37 + xx * 11) % 400 + 50).astype(np.uint16)


def test_encoding_without_jpegxl_is_a_clear_input_error(monkeypatch):
    monkeypatch.setattr(imagecodecs, "jpegxl_encode", _gone)
    with pytest.raises(InputError, match="needs imagecodecs with JPEG-XL"):
        lvpnet_base.encode_lattice(np.zeros((8, 8), np.int64), 3, 2)
    with pytest.raises(InputError, match="JPEG-XL"):
        LVPNetCodec(device="cpu").encode(_plane())


def test_a_base_lattice_without_jpegxl_is_not_called_damage(monkeypatch):
    codec = LVPNetCodec(device="cpu")
    x = _plane()
    with monkeypatch.context() as m:  # a chunk that surely holds a base lattice
        m.setattr(lattice_estimate, "early_level", lambda *a: 2)
        data = codec.encode(x)
    assert np.array_equal(codec.decode(data, x.shape, x.dtype, codec.version), x)
    monkeypatch.setattr(imagecodecs, "jpegxl_decode", _gone)
    with pytest.raises(InputError, match="needs imagecodecs with JPEG-XL"):
        codec.decode(data, x.shape, x.dtype, codec.version)


def test_no_imagecodecs_at_all_is_a_clear_input_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # ``import imagecodecs`` then raises ImportError
    with pytest.raises(InputError, match="JPEG-XL"):
        lvpnet_base.encode_lattice(np.zeros((8, 8), np.int64), 3, 2)
