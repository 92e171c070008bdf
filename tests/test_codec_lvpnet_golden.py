"""Golden files of the learned codec: fixed weights and inputs, fixed chunk bytes.

If encoding changes, these fail: a change of what the codec writes is a format change
(bump ``LVPNetCodec.version`` and keep decoding version 1), then regenerate with
``tests/data/lvpnet_golden/make_golden.py``.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from lvpnet.codecs.lvpnet_codec import LVPNetCodec

HERE = Path(__file__).resolve().parent / "data" / "lvpnet_golden"
NAMES = sorted(p.stem for p in HERE.glob("*.chunk"))
MODEL_SHA256 = "fc106c169fe8a5fe1000e2ec10fe6b28278fa7d600451a84d69fd78a7714b81e"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def codec():
    return LVPNetCodec(HERE / "model.pt", device="cpu")


def test_golden_files_present(codec):
    assert len(NAMES) >= 4
    assert hashlib.sha256((HERE / "model.pt").read_bytes()).hexdigest() == MODEL_SHA256
    assert codec.model_id() == MODEL_SHA256


@pytest.mark.parametrize("name", NAMES)
def test_golden_decode(codec, name):
    x = np.load(HERE / f"{name}.npy")
    data = (HERE / f"{name}.chunk").read_bytes()
    y = codec.decode(data, x.shape, x.dtype, 1)
    assert y.dtype == x.dtype and np.array_equal(y, x)


@pytest.mark.parametrize("name", NAMES)
def test_golden_encode(codec, name):
    x = np.load(HERE / f"{name}.npy")
    assert codec.encode(x) == (HERE / f"{name}.chunk").read_bytes()
