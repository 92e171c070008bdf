import numpy as np
import pytest


def stream_reader(values, sizes):
    """A stand-in for a stream of uniform symbols ``values`` of alphabet ``sizes``: ``pop(want)``
    returns the next ``len(want)`` values and checks they were written with those sizes;
    ``at[0]`` counts the values read."""
    at = [0]

    def pop(want):
        n = len(want)
        assert np.array_equal(want, sizes[at[0] : at[0] + n])
        at[0] += n
        return values[at[0] - n : at[0]]

    return pop, at


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def smooth_image(rng, shape, lo, hi, dtype):
    """A noisy gradient image: compressible like a scan, not trivially constant."""
    rows, cols = shape[-2], shape[-1]
    yy, xx = np.mgrid[0:rows, 0:cols]
    base = (np.sin(yy / 7.0) + np.cos(xx / 11.0) + 2) / 4
    img = lo + base * (hi - lo) + rng.normal(0, (hi - lo) * 0.02, size=shape)
    return np.clip(np.round(img), lo, hi).astype(dtype)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # napari's make_napari_viewer fixture reads item.rep_call to report leaks only after a pass
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A seeded, untrained model with the tiny-test config, saved as a checkpoint (stands in for real weights)."""
    import json
    from pathlib import Path

    import torch

    from lvpnet.model import LVPNet, ModelConfig, save_checkpoint

    cfg = json.loads((Path(__file__).resolve().parents[1] / "configs" / "tiny-test.json").read_text())["model"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = LVPNet(ModelConfig(**cfg))
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, net)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: on a busy 2-core CI machine, OpenMP's spinning threads make small models slow."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
