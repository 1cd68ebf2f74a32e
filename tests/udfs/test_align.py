"""Alignment puts the landmarks on the template."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.paths import LFW_DIR, MODELS_DIR, read_bgr
from tests.registry import registry_spec
from udfs.align import (
    ARCFACE_112,
    DLIB_150,
    AlignMethod,
    AlignTemplate,
    align_with_matrix,
    estimate_transform,
    transform_points,
)
from udfs.detect import FaceDetector


def test_dlib_template_points() -> None:
    # eyes: means of dlib mean_face_shape points 36-41 / 42-47, then (p + 0.25) / 1.5 * 150
    np.testing.assert_allclose(DLIB_150.points[0], [47.5492, 46.5990], atol=1e-3)
    np.testing.assert_allclose(DLIB_150.points[1], [100.4761, 46.5990], atol=1e-3)
    np.testing.assert_allclose(
        DLIB_150.points[2], [(0.490127 + 0.25) / 1.5 * 150, (0.515625 + 0.25) / 1.5 * 150]
    )
    # dlib's mean face is mirror-symmetric about the nose's vertical line (x = 0.490127, not 0.5)
    nose_x = DLIB_150.points[2, 0]
    assert DLIB_150.points[0, 0] + DLIB_150.points[1, 0] == pytest.approx(2 * nose_x, abs=1e-3)
    assert DLIB_150.points[3, 0] + DLIB_150.points[4, 0] == pytest.approx(2 * nose_x, abs=1e-3)


@pytest.mark.parametrize("method", ["lstsq", "lmeds"])
@pytest.mark.parametrize("template", [ARCFACE_112, DLIB_150])
def test_exact_similarity_is_recovered(template: AlignTemplate, method: AlignMethod) -> None:
    angle, scale, shift = math.radians(20), 2.5, np.array([300.0, 120.0])
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    landmarks = template.points.astype(np.float64) @ rotation.T + shift
    matrix = estimate_transform(landmarks, template, method)
    np.testing.assert_allclose(transform_points(landmarks, matrix), template.points, atol=1e-3)


@pytest.mark.parametrize("template", [ARCFACE_112, DLIB_150])
def test_real_face_lands_on_template(template: AlignTemplate) -> None:
    detector = FaceDetector(registry_spec("yunet_dynamic"), MODELS_DIR, input_size=320)
    photo = read_bgr(LFW_DIR / "Aaron_Sorkin" / "Aaron_Sorkin_0002.jpg")
    landmarks = detector.detect(photo).landmarks[0]
    crop, matrix = align_with_matrix(photo, landmarks, template)
    assert crop.shape == (template.size[1], template.size[0], 3) and crop.dtype == np.uint8
    residual = np.linalg.norm(transform_points(landmarks, matrix) - template.points, axis=1)
    # five points and four degrees of freedom: not exact, but a few pixels at most
    assert residual.mean() < 0.04 * template.size[0], residual
    # the detector, run again on the aligned crop, finds the landmarks where the template put them
    again = detector.detect(crop)
    assert len(again) >= 1
    assert np.linalg.norm(again.landmarks[0] - template.points, axis=1).mean() < 0.06 * template.size[0]
    # least squares minimises the squared residual; LMEDS may sacrifice a point for the others
    robust = transform_points(landmarks, estimate_transform(landmarks, template, "lmeds")) - template.points
    assert np.sum(residual**2) <= np.sum(robust**2) + 1e-6


def test_unknown_method_raises() -> None:
    with pytest.raises(ValueError, match="align method"):
        estimate_transform(ARCFACE_112.points, ARCFACE_112, "ransac")  # type: ignore[arg-type]
