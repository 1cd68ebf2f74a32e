"""Where the tests find the pinned models and the photo sets.

``FACELINK_MODELS_DIR`` and ``FACELINK_DATA_DIR`` override the defaults, which are the shared folders
beside the repository: ``<repo>/../shared/models`` and ``<repo>/../shared/datasets``.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("FACELINK_MODELS_DIR", REPO_ROOT.parent / "shared" / "models")).resolve()
DATA_DIR = Path(os.environ.get("FACELINK_DATA_DIR", REPO_ROOT.parent / "shared" / "datasets")).resolve()
LFW_DIR = DATA_DIR / "lfw_dev"


def read_bgr(path: str | Path) -> np.ndarray:
    """Read a test photo as BGR uint8, failing loudly when it is missing."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {path}"
    return image
