"""Files shipped with lvpnet: model weights and card, the sample scan (see README.md here)."""

from importlib.resources import files
from pathlib import Path


def path(name: str) -> Path:
    """Filesystem path of a shipped resource file."""
    return Path(str(files(__name__) / name))


SAMPLE_CT = "sample_ct.nii.gz"
