"""YuNet face detection on onnxruntime with the output decoding done in NumPy.

Photos are letterboxed (aspect kept, padded bottom/right with black) to a square ``input_size`` so a
batch of photos of any sizes runs as one [B,3,S,S] call of the dynamic YuNet model. The raw per-stride
outputs are decoded as ``MODELS.md`` describes, filtered by score, reduced by NMS and scaled back to
the original pixels. ``cv2.FaceDetectorYN`` decodes the same outputs and serves as the cross-check in
the tests.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from udfs.models import YUNET_OUTPUTS, YUNET_STRIDES, ModelSpec, load_onnx

logger = logging.getLogger(__name__)

#: Candidates kept (highest scores first) before NMS; cv2.FaceDetectorYN's default top_k.
PRE_NMS_TOP_K = 5000
#: Most input pixels per ONNX call, whatever ``max_batch`` says: YuNet's activations take ~180 bytes per
#: input pixel, so 64 photos at 960 (59 M pixels) took a Python worker to 10.5 GB and the kernel killed it.
#: This budget (64 photos at 320) holds a call to about 1.2 GB: 28 photos at 480, 16 at 640, 7 at 960.
MAX_BATCH_PIXELS = 64 * 320 * 320


@dataclass(frozen=True)
class Detections:
    """Faces found in one photo, sorted by score, highest first.

    Attributes:
        boxes: float32 [N,4] as (x, y, width, height) in original-photo pixels.
        landmarks: float32 [N,5,2] (x, y): image-left eye, image-right eye, nose tip, image-left mouth
            corner, image-right mouth corner.
        scores: float32 [N] in [0, 1].
    """

    boxes: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        """No faces."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
            scores=np.zeros((0,), np.float32),
        )


def letterbox(bgr: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Resize keeping aspect so the photo fits ``size`` x ``size``, padding bottom/right with zeros.

    Args:
        bgr: uint8 [H,W,3].
        size: Square side of the output.

    Returns:
        (uint8 [size,size,3] canvas, scale) where canvas pixel = original pixel * scale.
    """
    height, width = bgr.shape[:2]
    scale = min(size / width, size / height)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    # INTER_AREA avoids aliasing when shrinking a large photo a lot; bilinear otherwise (as the bare
    # reference and cv2 samples do).
    interpolation = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    resized = cv2.resize(bgr, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:new_h, :new_w] = resized
    return canvas, scale


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: float [N,4] as (x, y, w, h).
        scores: float [N].
        iou_threshold: Drop a box whose IoU with a kept, higher-scoring box exceeds this.

    Returns:
        int64 indices of kept boxes, by descending score.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    areas = np.maximum(boxes[:, 2], 0) * np.maximum(boxes[:, 3], 0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        inter_w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        inter_h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = inter_w * inter_h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


class FaceDetector:
    """YuNet detector over batches of BGR photos.

    Args:
        spec: A detector `ModelSpec` (an entry of the configuration's ``models.registry``).
        models_dir: Directory holding the model file.
        input_size: Square letterbox side, a multiple of 32: 320 for portraits, 640 for groups.
        score_threshold: Minimum score sqrt(cls*obj) of a face.
        nms_iou: IoU above which a lower-scoring overlapping box is dropped.
        top_k: Most faces returned per photo (after NMS).
        threads: onnxruntime intra-op threads.
        max_batch: Most photos per ONNX call in `detect_batch`; fewer at large sizes, so that a call holds at
            most ``MAX_BATCH_PIXELS`` input pixels.
    """

    def __init__(
        self,
        spec: ModelSpec,
        models_dir: str | Path,
        input_size: int,
        score_threshold: float = 0.6,
        nms_iou: float = 0.3,
        top_k: int = 50,
        threads: int = 1,
        max_batch: int = 32,
    ) -> None:
        if spec.kind != "detector":
            raise ValueError(f"{spec.name} is a {spec.kind}, not a detector")
        if input_size <= 0 or input_size % max(YUNET_STRIDES):
            raise ValueError(
                f"input_size must be a positive multiple of {max(YUNET_STRIDES)}, got {input_size}"
            )
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 < nms_iou <= 1.0:
            raise ValueError("score_threshold must be in [0, 1] and nms_iou in (0, 1]")
        if top_k < 1 or max_batch < 1:
            raise ValueError("top_k and max_batch must be >= 1")
        self.spec = spec
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.top_k = top_k
        self._session = load_onnx(spec, models_dir, threads)
        shape = self._session.get_inputs()[0].shape
        if isinstance(shape[2], int) and (shape[2], shape[3]) != (input_size, input_size):
            raise ValueError(f"{spec.name} has a fixed input {shape}; it cannot run at {input_size}")
        per_call = max(1, MAX_BATCH_PIXELS // (input_size * input_size))
        self.max_batch = 1 if shape[0] == 1 else min(max_batch, per_call)
        self._input_name = self._session.get_inputs()[0].name
        self._grids = {s: self._grid(input_size // s) for s in YUNET_STRIDES}

    @property
    def model_id(self) -> str:
        """The model's registry id."""
        return self.spec.model_id

    @staticmethod
    def _grid(cells: int) -> np.ndarray:
        """float32 [cells*cells, 2] (column, row) of each anchor in row-major order."""
        rows, cols = np.divmod(np.arange(cells * cells, dtype=np.int64), cells)
        return np.stack([cols, rows], axis=1).astype(np.float32)

    def detect(self, bgr: np.ndarray) -> Detections:
        """Detect faces in one BGR uint8 [H,W,3] photo."""
        return self.detect_batch([bgr])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect faces in several photos, letterboxed to one size and run in as few ONNX calls as possible.

        Args:
            images: BGR uint8 [H,W,3] arrays of any sizes.

        Returns:
            One `Detections` per image, in order.
        """
        results: list[Detections] = []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start : start + self.max_batch]
            canvases, scales = [], []
            for image in chunk:
                if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                    raise ValueError(f"expected BGR uint8 [H,W,3], got {image.dtype} {image.shape}")
                canvas, scale = letterbox(image, self.input_size)
                canvases.append(canvas)
                scales.append(scale)
            blob = np.ascontiguousarray(np.stack(canvases).transpose(0, 3, 1, 2), dtype=np.float32)
            raw = self._session.run(list(YUNET_OUTPUTS), {self._input_name: blob})
            outputs = dict(zip(YUNET_OUTPUTS, raw, strict=True))
            results.extend(self._decode(outputs, b, scale) for b, scale in enumerate(scales))
        return results

    def _decode(self, outputs: dict[str, np.ndarray], b: int, scale: float) -> Detections:
        """Decode image ``b`` of a batch's raw outputs into original-pixel detections."""
        boxes, landmarks, scores = [], [], []
        for stride in YUNET_STRIDES:
            cls = np.clip(outputs[f"cls_{stride}"][b, :, 0], 0.0, 1.0)
            obj = np.clip(outputs[f"obj_{stride}"][b, :, 0], 0.0, 1.0)
            score = np.sqrt(cls * obj)
            keep = np.flatnonzero(score > self.score_threshold)
            if keep.size == 0:
                continue
            anchor = self._grids[stride][keep]
            bbox = outputs[f"bbox_{stride}"][b, keep]
            centre = (anchor + bbox[:, :2]) * stride
            size = np.exp(bbox[:, 2:4]) * stride
            boxes.append(np.concatenate([centre - size / 2, size], axis=1))
            kps = outputs[f"kps_{stride}"][b, keep].reshape(-1, 5, 2)
            landmarks.append((anchor[:, None, :] + kps) * stride)
            scores.append(score[keep])
        if not scores:
            return Detections.empty()
        all_scores = np.concatenate(scores)
        candidates = np.argsort(-all_scores, kind="stable")[:PRE_NMS_TOP_K]
        all_boxes = np.concatenate(boxes)[candidates]
        all_landmarks = np.concatenate(landmarks)[candidates]
        all_scores = all_scores[candidates]
        kept = nms(all_boxes, all_scores, self.nms_iou)[: self.top_k]
        return Detections(
            boxes=(all_boxes[kept] / scale).astype(np.float32),
            landmarks=(all_landmarks[kept] / scale).astype(np.float32),
            scores=all_scores[kept].astype(np.float32),
        )
