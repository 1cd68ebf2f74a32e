"""Per-face capture-quality measures and a rule that accepts or rejects a face with reasons.

Measures are taken on the detector output and on the face aligned to the ArcFace 112x112 template, so
they do not depend on which recogniser runs. The rule follows the spirit of ID-capture guidance (ISO/IEC
19794-5 / ICAO 9303 photo rules): one frontal face, enough pixels between the eyes, in focus, neither
dark nor washed out. The rule is :class:`udfs.face_quality_rule.QualityRule`, free of NumPy so that the
configuration (which holds it) loads without it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FaceQuality:
    """Measured quality of one face.

    Attributes:
        det_score: Detector score in [0, 1].
        face_width_px: Detector box width, photo pixels.
        face_height_px: Detector box height, photo pixels.
        inter_eye_px: Distance between the eye landmarks, photo pixels.
        sharpness: Variance of the Laplacian of the grey aligned crop (higher = sharper).
        brightness: Mean grey level of the aligned crop, 0..255.
        contrast: Standard deviation of the grey aligned crop.
        roll_deg: Angle of the eye line from horizontal, degrees (positive = image-right eye lower).
        yaw_proxy: Nose offset from the eye midpoint along the eye line, over the inter-eye distance
            (0 frontal; about +-0.5 when the nose reaches an eye). Sign: positive = nose toward image right.
        n_faces: Faces the detector found in the photo.
    """

    det_score: float
    face_width_px: float
    face_height_px: float
    inter_eye_px: float
    sharpness: float
    brightness: float
    contrast: float
    roll_deg: float
    yaw_proxy: float
    n_faces: int

    def as_dict(self) -> dict[str, float | int]:
        """Fields as a plain dict (for result rows)."""
        return asdict(self)


def pose_from_landmarks(landmarks5: np.ndarray) -> tuple[float, float, float]:
    """Inter-eye distance, roll and yaw proxy from five landmarks.

    Args:
        landmarks5: float [5,2] (image-left eye, image-right eye, nose, mouth left, mouth right).

    Returns:
        (inter_eye_px, roll_deg, yaw_proxy); see `FaceQuality`.
    """
    pts = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    eye_vec = pts[1] - pts[0]
    inter_eye = float(np.hypot(*eye_vec))
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    if inter_eye <= 0:
        return 0.0, roll, 0.0
    offset = pts[2] - (pts[0] + pts[1]) / 2
    yaw = float(offset @ eye_vec) / inter_eye**2  # projection on the eye line, in inter-eye units
    return inter_eye, roll, yaw


def crop_statistics(aligned_bgr: np.ndarray) -> tuple[float, float, float]:
    """Sharpness, brightness and contrast of an aligned uint8 [H,W,3] BGR crop."""
    grey = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    mean, std = cv2.meanStdDev(grey)
    return sharpness, float(mean[0, 0]), float(std[0, 0])


def measure_quality(
    box: np.ndarray, landmarks5: np.ndarray, det_score: float, aligned_bgr: np.ndarray, n_faces: int
) -> FaceQuality:
    """Measure one face.

    Args:
        box: float [4] (x, y, w, h) in photo pixels.
        landmarks5: float [5,2] in photo pixels.
        det_score: Detector score.
        aligned_bgr: uint8 [112,112,3] crop aligned to ARCFACE_112.
        n_faces: Faces detected in the photo.

    Returns:
        The measures.
    """
    inter_eye, roll, yaw = pose_from_landmarks(landmarks5)
    sharpness, brightness, contrast = crop_statistics(aligned_bgr)
    return FaceQuality(
        det_score=float(det_score),
        face_width_px=float(box[2]),
        face_height_px=float(box[3]),
        inter_eye_px=inter_eye,
        sharpness=sharpness,
        brightness=brightness,
        contrast=contrast,
        roll_deg=roll,
        yaw_proxy=yaw,
        n_faces=int(n_faces),
    )
