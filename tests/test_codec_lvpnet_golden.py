"""Golden files of the learned codec: fixed weights and inputs, fixed chunk bytes.

Decoding the committed chunks must give the inputs exactly (the format and the integer
decoder side must not change by accident). Encoding the inputs must give the same bytes: a
change of what the codec writes is a format change (bump ``LVPNetCodec.version`` and keep
decoding version 1). When the float encoder's architecture changes (its weights no longer
load), regenerate deliberately with ``tests/data/lvpnet_golden/make_golden.py``.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from lvpnet.codecs.lvpnet_codec import LVPNetCodec

HERE = Path(__file__).resolve().parent / "data" / "lvpnet_golden"
EXPECTED = json.loads((HERE / "expected.json").read_text())
NAMES = sorted(EXPECTED["chunks"])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def codec():
    return LVPNetCodec(HERE / "model.pt", device="cpu")


def test_golden_files_present(codec):
    assert len(NAMES) >= 4 and EXPECTED["codec_version"] == codec.version
    assert hashlib.sha256((HERE / "model.pt").read_bytes()).hexdigest() == EXPECTED["model_sha256"]
    assert codec.model_id() == EXPECTED["model_sha256"]
    for name in NAMES:
        assert hashlib.sha256((HERE / f"{name}.chunk").read_bytes()).hexdigest() == EXPECTED["chunks"][name]


@pytest.mark.parametrize("name", NAMES)
def test_golden_decode(codec, name):
    x = np.load(HERE / f"{name}.npy")
    data = (HERE / f"{name}.chunk").read_bytes()
    y = codec.decode(data, x.shape, x.dtype, 1)
    assert y.dtype == x.dtype and np.array_equal(y, x)


@pytest.mark.parametrize("name", NAMES)
def test_golden_encode(codec, name):
    x = np.load(HERE / f"{name}.npy")
    try:
        data = codec.encode(x)
    except RuntimeError as e:  # load_state_dict: the encoder's layers changed
        pytest.fail(f"the golden weights no longer load into the float encoder ({str(e)[:200]}); "
                    "if the architecture change is meant, regenerate with tests/data/lvpnet_golden/make_golden.py")
    assert data == (HERE / f"{name}.chunk").read_bytes(), "the codec's output changed: bump its version or fix it"
