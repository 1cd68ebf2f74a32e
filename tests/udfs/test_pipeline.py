"""FacePipeline: statuses, several faces with one primary, batching, timings."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.paths import DATA_DIR, LFW_DIR, MODELS_DIR, read_bgr
from tests.registry import registry_spec
from udfs.align import AlignMethod, AlignTemplate
from udfs.detect import FaceDetector
from udfs.embed import FaceEmbedder
from udfs.pipeline import FacePipeline, build_pipeline, select_primary

PORTRAIT = LFW_DIR / "Aaron_Sorkin" / "Aaron_Sorkin_0002.jpg"
OTHER = LFW_DIR / "AJ_Cook" / "AJ_Cook_0001.jpg"
GROUP = DATA_DIR / "deepface_unit" / "id04_img16" / "img62.jpg"  # three faces


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    detector = FaceDetector(registry_spec("yunet_dynamic"), MODELS_DIR, input_size=320)
    embedders = {
        name: FaceEmbedder(registry_spec(name), MODELS_DIR, batch_size=64, flip_tta=False)
        for name in ("mobilefacenet_128d", "dlib_resnet34_128d")
    }
    return FacePipeline(detector, embedders)


def _jpeg(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    return buffer.tobytes()


def test_portrait_gives_one_good_primary_face(pipeline: FacePipeline) -> None:
    result = pipeline.process(PORTRAIT.read_bytes())
    assert (result.status, result.format, result.width, result.height) == ("ok", "JPEG", 250, 250)
    assert len(result.faces) == 1
    face = result.faces[0]
    assert face["is_primary"] and face["quality_ok"] and face["quality_reasons"] == []
    assert face["box"].shape == (4,) and face["landmarks"].shape == (5, 2)
    assert set(face["embeddings"]) == {"mobilefacenet_128d", "dlib_resnet34_128d"}
    assert face["embedding"] is face["embeddings"]["mobilefacenet_128d"]
    for vector in face["embeddings"].values():
        assert vector.dtype == np.float32 and vector.shape == (128,)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_plain_grey_photo_has_no_face(pipeline: FacePipeline) -> None:
    result = pipeline.process(_jpeg(np.full((240, 320, 3), 128, np.uint8)))
    assert result.status == "no_face" and result.faces == [] and result.primary is None
    assert (result.width, result.height) == (320, 240)


def test_bad_bytes_are_results_not_exceptions(pipeline: FacePipeline) -> None:
    results = pipeline.process_batch([b"", b"not a photo", PORTRAIT.read_bytes()[:-500]])
    assert [r.status for r in results] == ["decode_error"] * 3
    assert [r.error_code for r in results] == ["empty_file", "not_an_image", "corrupt_image"]


def test_several_faces_have_exactly_one_primary(pipeline: FacePipeline) -> None:
    tiled = np.hstack([read_bgr(PORTRAIT), read_bgr(OTHER)])
    for data in (_jpeg(tiled), GROUP.read_bytes()):
        result = pipeline.process(data)
        assert result.status == "ok" and len(result.faces) >= 2
        assert sum(f["is_primary"] for f in result.faces) == 1
        assert all(f["n_faces"] == len(result.faces) for f in result.faces)
        assert [f["face_index"] for f in result.faces] == list(range(len(result.faces)))


def test_batch_matches_single_and_counts_time(pipeline: FacePipeline) -> None:
    photos = [PORTRAIT.read_bytes(), b"", GROUP.read_bytes(), OTHER.read_bytes()]
    pipeline.timings.reset()
    batched = pipeline.process_batch(photos)
    assert pipeline.timings.photos == 4 and pipeline.timings.faces == 5
    assert pipeline.timings.detect_s > 0 and pipeline.timings.embed_s > 0
    for data, result in zip(photos, batched, strict=True):
        single = pipeline.process(data)
        assert single.status == result.status and len(single.faces) == len(result.faces)
        for a, b in zip(single.faces, result.faces, strict=True):
            np.testing.assert_allclose(a["box"], b["box"], atol=1e-3)
            np.testing.assert_allclose(a["embedding"], b["embedding"], atol=1e-4)


def test_same_person_across_photos_beats_a_stranger(pipeline: FacePipeline) -> None:
    a1, a2, other = pipeline.process_batch(
        [(LFW_DIR / "Abel_Pacheco" / f"Abel_Pacheco_000{i}.jpg").read_bytes() for i in (1, 4)]
        + [OTHER.read_bytes()]
    )
    assert a1.primary is not None and a2.primary is not None and other.primary is not None
    same = float(a1.primary["embedding"] @ a2.primary["embedding"])
    different = float(a1.primary["embedding"] @ other.primary["embedding"])
    assert same > different + 0.2


def test_primary_prefers_large_central_faces() -> None:
    boxes = np.array([[0, 0, 100, 100], [450, 450, 100, 100], [900, 900, 100, 100]], np.float32)
    assert select_primary(boxes, np.ones(3, np.float32), 1000, 1000) == 1
    boxes[2, 2:] = 300  # a much larger face in the corner wins
    assert select_primary(boxes, np.ones(3, np.float32), 1000, 1000) == 2


def test_face_processing_failure_is_a_result(pipeline: FacePipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    import udfs.pipeline as module

    real_align = module.align

    def flaky_align(
        bgr: np.ndarray, landmarks: np.ndarray, template: AlignTemplate, method: AlignMethod
    ) -> np.ndarray:
        if bgr.shape[:2] == (440, 660):  # only the group photo
            raise RuntimeError("boom")
        return real_align(bgr, landmarks, template, method)

    expected = pipeline.process(OTHER.read_bytes())
    monkeypatch.setattr(module, "align", flaky_align)
    group, other = pipeline.process_batch([GROUP.read_bytes(), OTHER.read_bytes()])
    assert (group.status, group.error_code, group.faces) == ("error", "face_processing_failed", [])
    assert other.status == "ok"  # its crops still line up with its faces
    np.testing.assert_allclose(other.faces[0]["embedding"], expected.faces[0]["embedding"], atol=1e-5)


def test_build_pipeline_is_cached_per_settings() -> None:
    specs = (registry_spec("yunet_dynamic"), [registry_spec("mobilefacenet_128d")])
    first = build_pipeline(MODELS_DIR, *specs, detect_size=320, batch_size=8, flip_tta=False)
    assert build_pipeline(MODELS_DIR, *specs, detect_size=320, batch_size=8, flip_tta=False) is first
    assert build_pipeline(MODELS_DIR, *specs, detect_size=320, batch_size=8, flip_tta=True) is not first
    assert first.model_ids == {
        "detector": "yunet_dynamic@daede24002cc",
        "mobilefacenet_128d": "mobilefacenet_128d@363229ee1930",
    }
