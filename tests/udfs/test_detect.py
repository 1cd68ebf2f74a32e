"""YuNet detector: NumPy decoding agrees with cv2.FaceDetectorYN; batching changes nothing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.paths import DATA_DIR, LFW_DIR, MODELS_DIR, read_bgr
from tests.registry import registry_spec
from udfs.detect import FaceDetector, letterbox, nms
from udfs.models import resolve_model

PHOTOS = [
    LFW_DIR / "AJ_Cook" / "AJ_Cook_0001.jpg",
    LFW_DIR / "Aaron_Sorkin" / "Aaron_Sorkin_0002.jpg",
    DATA_DIR / "deepface_unit" / "id00_img1" / "img1.jpg",  # 1382x1868 portrait
    DATA_DIR / "deepface_unit" / "id04_img16" / "img62.jpg",  # three faces
]


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(registry_spec("yunet_dynamic"), MODELS_DIR, input_size=320)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [read_bgr(p) for p in PHOTOS]


def _opencv_reference(image: np.ndarray, size: int) -> np.ndarray:
    """cv2.FaceDetectorYN (fixed 2023mar model) on the same letterbox, rescaled to photo pixels."""
    model = resolve_model(registry_spec("yunet_2023mar"), MODELS_DIR)
    reference = cv2.FaceDetectorYN.create(str(model), "", (size, size), 0.6, 0.3, 5000)
    canvas, scale = letterbox(image, size)
    _, raw = reference.detect(canvas)
    faces: np.ndarray = np.zeros((0, 15), np.float64) if raw is None else raw.astype(np.float64)
    faces[:, :14] = faces[:, :14] / scale
    return faces[np.argsort(-faces[:, 14])]


def test_matches_opencv_face_detector(detector: FaceDetector, images: list[np.ndarray]) -> None:
    for path, image in zip(PHOTOS, images, strict=True):
        ours = detector.detect(image)
        ref = _opencv_reference(image, 320)
        assert len(ours) == len(ref), path
        assert len(ours) >= 1, path
        # OpenCV suppresses on integer boxes, so compare as matched sets, ordered by score
        np.testing.assert_allclose(ours.scores, ref[:, 14], atol=1e-4)
        np.testing.assert_allclose(ours.boxes, ref[:, :4], atol=0.05)
        np.testing.assert_allclose(ours.landmarks.reshape(-1, 10), ref[:, 4:14], atol=0.05)


def test_batch_equals_single(detector: FaceDetector, images: list[np.ndarray]) -> None:
    batched = detector.detect_batch(images)
    for image, dets in zip(images, batched, strict=True):
        single = detector.detect(image)
        np.testing.assert_allclose(dets.boxes, single.boxes, atol=1e-3)
        np.testing.assert_allclose(dets.scores, single.scores, atol=1e-5)


def test_outputs_are_typed_sorted_and_inside_the_photo(
    detector: FaceDetector, images: list[np.ndarray]
) -> None:
    dets = detector.detect(images[3])
    assert len(dets) == 3
    assert dets.boxes.dtype == dets.landmarks.dtype == dets.scores.dtype == np.float32
    assert dets.landmarks.shape == (3, 5, 2)
    assert np.all(np.diff(dets.scores) <= 0)
    height, width = images[3].shape[:2]
    x, y, w, h = dets.boxes.T  # a face may be cut by the frame (one here is), but must overlap it
    assert np.all((x < width) & (x + w > 0) & (y < height) & (y + h > 0))
    # eyes above the mouth, image-left eye left of image-right eye
    assert np.all(dets.landmarks[:, 0, 0] < dets.landmarks[:, 1, 0])
    assert np.all(dets.landmarks[:, :2, 1].mean(1) < dets.landmarks[:, 3:, 1].mean(1))


def test_plain_grey_image_has_no_face(detector: FaceDetector) -> None:
    dets = detector.detect(np.full((200, 300, 3), 128, np.uint8))
    assert len(dets) == 0 and dets.boxes.shape == (0, 4)


def test_nms_drops_overlaps() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10]], np.float32)
    kept = nms(boxes, np.array([0.9, 0.95, 0.8], np.float32), 0.3)
    assert kept.tolist() == [1, 2]


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        FaceDetector(registry_spec("yunet_dynamic"), MODELS_DIR, input_size=300)
    with pytest.raises(ValueError, match="not a detector"):
        FaceDetector(registry_spec("mobilefacenet_128d"), MODELS_DIR, input_size=320)
    with pytest.raises(ValueError, match="fixed input"):
        FaceDetector(registry_spec("yunet_2023mar"), MODELS_DIR, input_size=320)


def test_detector_batches_hold_a_bounded_number_of_pixels() -> None:
    """64 photos at 960 in one call took a worker to 10.5 GB; large sizes run in smaller calls."""
    sizes = {size: FaceDetector(registry_spec("yunet_dynamic"), MODELS_DIR, input_size=size, max_batch=64).max_batch
             for size in (320, 480, 960)}
    assert sizes == {320: 64, 480: 28, 960: 7}
    image = read_bgr(LFW_DIR / "AJ_Cook" / "AJ_Cook_0001.jpg")
    big = FaceDetector(registry_spec("yunet_dynamic"), MODELS_DIR, input_size=960, max_batch=64)
    found = big.detect_batch([image] * 9)
    assert len(found) == 9 and all(len(d) >= 1 for d in found)
    np.testing.assert_allclose(found[0].boxes, found[8].boxes)
