"""Recognisers: unit-length 128-d embeddings that separate people on real LFW pairs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.paths import LFW_DIR, MODELS_DIR, read_bgr
from tests.registry import registry_spec
from udfs.align import align
from udfs.detect import FaceDetector
from udfs.embed import FaceEmbedder

# From lfw_dev pairs.txt, fold 1: three same-person pairs, three different-person pairs.
SAME = [("Abel_Pacheco", 1, "Abel_Pacheco", 4), ("Akhmed_Zakayev", 1, "Akhmed_Zakayev", 3),
        ("Amber_Tamblyn", 1, "Amber_Tamblyn", 2)]  # fmt: skip
DIFFERENT = [("Abel_Pacheco", 1, "Jong_Thae_Hwa", 2), ("Abel_Pacheco", 2, "Jean-Francois_Lemounier", 1),
             ("Akhmed_Zakayev", 2, "Donna_Morrissey", 1)]  # fmt: skip
RECOGNISERS = ["mobilefacenet_128d", "dlib_resnet34_128d"]


def _path(name: str, number: int) -> str:
    return str(LFW_DIR / name / f"{name}_{number:04d}.jpg")


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(registry_spec("yunet_dynamic"), MODELS_DIR, input_size=320)


@pytest.fixture(scope="module", params=RECOGNISERS)
def embedder(request: pytest.FixtureRequest) -> FaceEmbedder:
    return FaceEmbedder(registry_spec(request.param), MODELS_DIR, batch_size=4, flip_tta=False)


def _crops(detector: FaceDetector, embedder: FaceEmbedder, paths: list[str]) -> np.ndarray:
    crops = []
    for path in paths:
        photo = read_bgr(path)
        crops.append(align(photo, detector.detect(photo).landmarks[0], embedder.template))
    return np.stack(crops)


def test_embeddings_are_unit_length_128d(detector: FaceDetector, embedder: FaceEmbedder) -> None:
    crops = _crops(detector, embedder, [_path(*SAME[0][:2]), _path(*SAME[0][2:])])
    vectors = embedder.embed(crops)
    assert vectors.shape == (2, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # batching (batch_size 4 vs one call per crop) changes nothing
    np.testing.assert_allclose(embedder.embed(crops[:1])[0], vectors[0], atol=1e-5)


def test_same_person_scores_higher(detector: FaceDetector, embedder: FaceEmbedder) -> None:
    pairs = SAME + DIFFERENT
    paths = [p for a, i, b, j in pairs for p in (_path(a, i), _path(b, j))]
    vectors = embedder.embed(_crops(detector, embedder, paths))
    scores = np.sum(vectors[0::2] * vectors[1::2], axis=1)
    same, different = scores[: len(SAME)], scores[len(SAME) :]
    assert same.min() > different.max(), (same, different)


def test_flip_tta_is_normalised_and_close(detector: FaceDetector, embedder: FaceEmbedder) -> None:
    tta = FaceEmbedder(embedder.spec, MODELS_DIR, batch_size=64, flip_tta=True)
    crops = _crops(detector, embedder, [_path(*DIFFERENT[0][:2])])
    plain, flipped = embedder.embed(crops), tta.embed(crops)
    np.testing.assert_allclose(np.linalg.norm(flipped, axis=1), 1.0, atol=1e-5)
    assert 0.8 < float(plain[0] @ flipped[0]) < 1.0


def test_wrong_crop_shape_and_empty_batch(embedder: FaceEmbedder) -> None:
    with pytest.raises(ValueError, match="crops"):
        embedder.embed(np.zeros((1, 64, 64, 3), np.uint8))
    assert embedder.embed(np.zeros((0, *embedder.template.size[::-1], 3), np.uint8)).shape == (0, 128)
