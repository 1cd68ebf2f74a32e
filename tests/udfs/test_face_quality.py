"""Quality measures respond to what they claim to measure; the rule names every failure."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from tests.paths import LFW_DIR, MODELS_DIR, read_bgr
from tests.registry import registry_spec
from udfs.align import ARCFACE_112, align
from udfs.detect import FaceDetector
from udfs.face_quality import FaceQuality, crop_statistics, measure_quality, pose_from_landmarks
from udfs.face_quality_rule import QualityRule

FRONTAL = ARCFACE_112.points.astype(np.float64)


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return points @ rotation.T


def test_pose_from_landmarks() -> None:
    inter_eye, roll, yaw = pose_from_landmarks(FRONTAL)
    assert inter_eye == pytest.approx(35.24, abs=0.01)
    assert abs(roll) < 0.5 and abs(yaw) < 0.02
    _, roll, yaw_rotated = pose_from_landmarks(_rotate(FRONTAL, 20.0))
    assert roll == pytest.approx(20.0 - 0.32, abs=0.05)  # the template's eye line is tilted by -0.32 deg
    assert yaw_rotated == pytest.approx(yaw, abs=1e-6)  # roll alone does not look like yaw
    turned = FRONTAL.copy()
    turned[2, 0] += 0.4 * inter_eye  # nose shifted toward the image-right eye
    assert pose_from_landmarks(turned)[2] == pytest.approx(0.4, abs=0.02)


def test_crop_statistics_track_blur_and_light() -> None:
    photo = read_bgr(LFW_DIR / "AJ_Cook" / "AJ_Cook_0001.jpg")
    crop = cv2.resize(photo[60:190, 60:190], (112, 112))
    sharp, brightness, contrast = crop_statistics(crop)
    blurred, _, _ = crop_statistics(cv2.GaussianBlur(crop, (0, 0), 3))
    _, dark, low_contrast = crop_statistics((crop // 4).astype(np.uint8))
    assert blurred < sharp / 4
    assert dark < brightness / 3 and low_contrast < contrast / 3


def test_real_face_passes_default_rule() -> None:
    detector = FaceDetector(registry_spec("yunet_dynamic"), MODELS_DIR, input_size=320)
    photo = read_bgr(LFW_DIR / "Aaron_Sorkin" / "Aaron_Sorkin_0002.jpg")
    dets = detector.detect(photo)
    crop = align(photo, dets.landmarks[0], ARCFACE_112)
    quality = measure_quality(dets.boxes[0], dets.landmarks[0], float(dets.scores[0]), crop, len(dets))
    assert 30 < quality.inter_eye_px < 60 and quality.n_faces == 1
    assert QualityRule().evaluate(quality) == (True, [])


def test_rule_names_each_failure() -> None:
    good = FaceQuality(0.93, 95.0, 120.0, 43.0, 150.0, 116.0, 50.0, 2.0, 0.1, 1)
    assert QualityRule().evaluate(good) == (True, [])
    bad = dataclasses.replace(
        good, det_score=0.7, inter_eye_px=10.0, sharpness=5.0, brightness=20.0, contrast=5.0,
        roll_deg=-40.0, yaw_proxy=-0.6, n_faces=6,
    )  # fmt: skip
    ok, reasons = QualityRule().evaluate(bad)
    assert not ok
    assert reasons == [
        "det_score_below_min", "inter_eye_below_min", "sharpness_below_min", "brightness_below_min",
        "contrast_below_min", "roll_above_max", "yaw_above_max", "too_many_faces",
    ]  # fmt: skip
    assert QualityRule().evaluate(dataclasses.replace(good, brightness=240.0))[1] == ["brightness_above_max"]
    assert QualityRule(max_faces=None).evaluate(dataclasses.replace(good, n_faces=9))[0]
    assert QualityRule.strict_id_capture().evaluate(good)[1] == ["inter_eye_below_min"]
