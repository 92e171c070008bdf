"""A few seconds of the fuzz harness (fuzz/fuzz_lvp.py) with a fixed seed: no finding allowed.

Longer runs by hand: ``python fuzz/fuzz_lvp.py --seconds 600 --seed N [--learned]``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import fuzz_lvp  # noqa: E402


def test_fuzz_container_chunks_and_records_briefly():
    findings = fuzz_lvp.run(iterations=15000, seconds=25, seed=21, log=lambda *_: None)
    assert findings == []


def test_fuzz_learned_codec_chunks_briefly():
    findings = fuzz_lvp.run(iterations=1000, seconds=12, seed=7, learned=True, log=lambda *_: None)
    assert findings == []
