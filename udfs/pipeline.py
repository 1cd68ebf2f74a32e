"""Photo bytes to faces with quality and embeddings: decode, detect, align, measure, embed.

`FacePipeline.process_batch` is what a Spark ``mapInPandas``/``mapInArrow`` function calls once per
Arrow batch: detection runs on letterboxed photos in batched ONNX calls and every aligned crop of the
batch is embedded in one call per recogniser. A photo that fails (undecodable, no face) comes back as a
`PhotoResult` with a status; only systemic faults (bad model, bad arguments) raise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from udfs.align import ARCFACE_112, AlignMethod, AlignTemplate, align
from udfs.decode import DecodedImage, ImageDecodeError, decode_image
from udfs.detect import Detections, FaceDetector
from udfs.embed import MIRROR, FaceEmbedder, MirroredEmbedder, fuse_embeddings
from udfs.face_quality import measure_quality
from udfs.face_quality_rule import QualityRule
from udfs.models import ModelSpec, cache_key, get_cached

logger = logging.getLogger(__name__)

PhotoStatus = Literal["ok", "no_face", "decode_error", "error"]

#: 40 MP: a full-frame camera photo fits; a decoded photo at the limit takes 120 MB.
DEFAULT_MAX_PIXELS = 40_000_000
_STAGES = ("decode", "detect", "align", "quality", "embed")


@dataclass
class StageTimings:
    """Accumulated wall-clock seconds per stage and counts, for benchmarks and logs."""

    decode_s: float = 0.0
    detect_s: float = 0.0
    align_s: float = 0.0
    quality_s: float = 0.0
    embed_s: float = 0.0
    photos: int = 0
    faces: int = 0

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        """Add the time spent in the ``with`` block to ``<stage>_s``."""
        if stage not in _STAGES:
            raise ValueError(f"unknown stage {stage!r}; known: {_STAGES}")
        start = time.perf_counter()
        try:
            yield
        finally:
            attr = f"{stage}_s"
            setattr(self, attr, getattr(self, attr) + time.perf_counter() - start)

    def merge(self, other: StageTimings) -> None:
        """Add ``other``'s totals to these."""
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def reset(self) -> None:
        """Zero everything."""
        for name, value in asdict(StageTimings()).items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, float]:
        """Totals plus ``total_s`` and per-photo milliseconds (``<stage>_ms_per_photo``)."""
        out: dict[str, float] = asdict(self)
        out["total_s"] = sum(getattr(self, f"{s}_s") for s in _STAGES)
        for stage in (*_STAGES, "total"):
            out[f"{stage}_ms_per_photo"] = 1000.0 * out[f"{stage}_s"] / max(self.photos, 1)
        return out


@dataclass
class PhotoResult:
    """Outcome for one photo.

    Attributes:
        status: ``"ok"`` (at least one face), ``"no_face"``, ``"decode_error"``, or ``"error"`` when
            aligning/measuring a decoded photo's faces raised (logged; not expected in practice).
        error_code: `ImageDecodeError` code for ``decode_error``, ``"face_processing_failed"`` for
            ``error``, else None.
        error_detail: Human-readable reason, else None.
        width: Decoded width (after EXIF orientation), None when undecodable.
        height: Decoded height, None when undecodable.
        format: Container format (``"JPEG"``...), None when undecodable.
        faces: One dict per face, by descending detector score, with keys ``face_index`` (int),
            ``box`` (float32 [4] x, y, w, h), ``landmarks`` (float32 [5,2]), ``det_score``, every
            `FaceQuality` field, ``quality_ok`` (bool), ``quality_reasons`` (list[str]), ``is_primary``
            (bool, exactly one True), ``embedding`` (float32: the first recogniser's, or the fusion of all
            of them when the pipeline has fusion weights) and ``embeddings`` ({recogniser name: float32 [dim]}).
    """

    status: PhotoStatus
    error_code: str | None = None
    error_detail: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    faces: list[dict[str, Any]] = field(default_factory=list)

    @property
    def primary(self) -> dict[str, Any] | None:
        """The primary face's dict, or None without faces."""
        return next((f for f in self.faces if f["is_primary"]), None)


def select_primary(boxes: np.ndarray, scores: np.ndarray, width: int, height: int) -> int:
    """Index of the photo's primary face: the large, confident, central one.

    Rule: maximise ``w * h * score * (1 - 0.5 * d)`` where ``d`` is the distance of the box centre from
    the photo centre over half the photo diagonal (0 at the centre, 1 in a corner). A central face beats
    an equally large face in a corner by up to 2x; a face more than twice the area of a central one wins.

    Args:
        boxes: float [N,4] (x, y, w, h), N >= 1.
        scores: float [N].
        width: Photo width.
        height: Photo height.
    """
    centres = boxes[:, :2] + boxes[:, 2:4] / 2
    offset = np.hypot(centres[:, 0] - width / 2, centres[:, 1] - height / 2) / (np.hypot(width, height) / 2)
    weight = boxes[:, 2] * boxes[:, 3] * scores * (1.0 - 0.5 * np.clip(offset, 0.0, 1.0))
    return int(np.argmax(weight))


class FacePipeline:
    """Decode, detect, align, measure and embed photos.

    Args:
        detector: The face detector.
        embedders: One recogniser, or several by name; the first one fills each face's ``embedding``
            unless ``fusion_weights`` is given.
        quality_rule: Thresholds for ``quality_ok`` (default `QualityRule()`).
        max_pixels: Largest photo (width*height) decoded; larger ones are ``too_many_pixels``.
        chunk_size: Photos decoded and detected together; bounds memory to about chunk_size decoded photos
            (crops of the whole batch are kept for one embedding call per recogniser).
        align_method: Similarity fit, ``"lstsq"`` or ``"lmeds"`` (see `udfs.align`).
        fusion_weights: One weight per embedder (in order, summing to 1): each face's ``embedding`` is then
            the fusion of all of them (:func:`udfs.embed.fuse_embeddings`).
    """

    def __init__(
        self,
        detector: FaceDetector,
        embedders: FaceEmbedder | Mapping[str, FaceEmbedder],
        quality_rule: QualityRule | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        chunk_size: int = 32,
        align_method: AlignMethod = "lstsq",
        fusion_weights: Sequence[float] | None = None,
    ) -> None:
        if isinstance(embedders, FaceEmbedder):
            embedders = {embedders.spec.name: embedders}
        if not embedders:
            raise ValueError("at least one embedder is required")
        if max_pixels < 1 or chunk_size < 1:
            raise ValueError("max_pixels and chunk_size must be >= 1")
        if fusion_weights is not None and len(fusion_weights) != len(embedders):
            raise ValueError(f"{len(fusion_weights)} fusion weights for {len(embedders)} embedders")
        self.detector = detector
        self.embedders: dict[str, FaceEmbedder] = dict(embedders)
        self.fusion_weights = tuple(fusion_weights) if fusion_weights is not None else None
        self.quality_rule = quality_rule or QualityRule()
        self.max_pixels = max_pixels
        self.chunk_size = chunk_size
        self.align_method: AlignMethod = align_method
        self.timings = StageTimings()
        templates = {e.template.name: e.template for e in self.embedders.values()}
        templates.setdefault(ARCFACE_112.name, ARCFACE_112)  # quality is always measured on ArcFace crops
        self._templates: dict[str, AlignTemplate] = templates

    @property
    def model_ids(self) -> dict[str, str]:
        """Model ids in use: ``{"detector": ..., <recogniser name>: ...}``."""
        return {"detector": self.detector.model_id, **{k: e.model_id for k, e in self.embedders.items()}}

    def process(self, data: bytes) -> PhotoResult:
        """Process one photo's bytes (see `process_batch`)."""
        return self.process_batch([data])[0]

    def process_batch(self, photos: Sequence[bytes]) -> list[PhotoResult]:
        """Process photos with batched detection and one embedding call per recogniser.

        Args:
            photos: Encoded photo files.

        Returns:
            One `PhotoResult` per photo, in order.
        """
        results: list[PhotoResult] = []
        crops: dict[str, list[np.ndarray]] = {name: [] for name in self._templates}
        for start in range(0, len(photos), self.chunk_size):
            results.extend(self._process_chunk(photos[start : start + self.chunk_size], crops))
        self._embed_all(results, crops)
        self.timings.photos += len(photos)
        return results

    def _decode(self, data: bytes) -> DecodedImage | PhotoResult:
        try:
            return decode_image(data, self.max_pixels)
        except ImageDecodeError as exc:
            return PhotoResult(status="decode_error", error_code=exc.code, error_detail=exc.detail)

    def _process_chunk(
        self, photos: Sequence[bytes], crops: dict[str, list[np.ndarray]]
    ) -> list[PhotoResult]:
        """Decode, detect, align and measure one chunk; aligned crops are appended to ``crops``."""
        with self.timings.time("decode"):
            decoded = [self._decode(data) for data in photos]
        images = [d for d in decoded if isinstance(d, DecodedImage)]
        with self.timings.time("detect"):
            detections = iter(self.detector.detect_batch([image.bgr for image in images]))
        results = []
        for item in decoded:
            if isinstance(item, PhotoResult):
                results.append(item)
                continue
            result = PhotoResult(status="no_face", width=item.width, height=item.height, format=item.format)
            faces = next(detections)
            if len(faces):
                try:
                    result.faces, photo_crops = self._faces(item, faces)
                except Exception as exc:  # one odd photo must not fail the Spark task
                    logger.exception(
                        "face processing failed on a %dx%d %s", item.width, item.height, item.format
                    )
                    result.status, result.error_code = "error", "face_processing_failed"
                    result.error_detail = f"{type(exc).__name__}: {exc}"[:500]
                else:
                    result.status = "ok"
                    for name, photo_list in photo_crops.items():
                        crops[name].extend(photo_list)
            results.append(result)
        return results

    def _faces(
        self, image: DecodedImage, detections: Detections
    ) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
        """Face dicts (without embeddings) for one photo and its aligned crops by template name."""
        primary = select_primary(detections.boxes, detections.scores, image.width, image.height)
        faces = []
        crops: dict[str, list[np.ndarray]] = {name: [] for name in self._templates}
        for j in range(len(detections)):
            with self.timings.time("align"):
                aligned = {
                    name: align(image.bgr, detections.landmarks[j], t, self.align_method)
                    for name, t in self._templates.items()
                }
            for name, crop in aligned.items():
                crops[name].append(crop)
            with self.timings.time("quality"):
                quality = measure_quality(
                    detections.boxes[j],
                    detections.landmarks[j],
                    detections.scores[j],
                    aligned[ARCFACE_112.name],
                    len(detections),
                )
                ok, reasons = self.quality_rule.evaluate(quality)
            faces.append(
                {
                    "face_index": j,
                    "box": detections.boxes[j].copy(),
                    "landmarks": detections.landmarks[j].copy(),
                    **quality.as_dict(),
                    "quality_ok": ok,
                    "quality_reasons": reasons,
                    "is_primary": j == primary,
                }
            )
        self.timings.faces += len(faces)
        return faces, crops

    def _embed_all(self, results: list[PhotoResult], crops: dict[str, list[np.ndarray]]) -> None:
        """Embed every crop of the batch once per recogniser and attach the vectors to the faces."""
        faces = [face for result in results for face in result.faces]
        if not faces:
            return
        first = next(iter(self.embedders))
        with self.timings.time("embed"):
            vectors = {
                name: embedder.embed(np.stack(crops[embedder.template.name]))
                for name, embedder in self.embedders.items()
            }
            fused = fuse_embeddings(list(vectors.values()), self.fusion_weights) if self.fusion_weights else None
        for i, face in enumerate(faces):
            face["embeddings"] = {name: v[i] for name, v in vectors.items()}
            face["embedding"] = fused[i] if fused is not None else face["embeddings"][first]


def build_pipeline(
    models_dir: str | Path,
    detector_spec: ModelSpec,
    recogniser_specs: Sequence[ModelSpec],
    *,
    detect_size: int,
    batch_size: int,
    flip_tta: bool | Sequence[bool],
    score_threshold: float = 0.6,
    nms_iou: float = 0.3,
    threads: int = 1,
    detect_batch_size: int | None = None,
    quality_rule: QualityRule | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    align_method: AlignMethod = "lstsq",
    fusion_weights: Sequence[float] | None = None,
    mirrored: Sequence[str] = (),
    cached: bool = True,
) -> FacePipeline:
    """Build a `FacePipeline` from plain values, once per Python worker when ``cached``.

    This is what a Spark UDF factory calls on the executor: every argument is a plain, picklable value
    chosen on the driver, and the cache key covers all of them, so tasks reusing a worker reuse its models.
    The settings production chooses (detector size, batch size, flip TTA: ``extract`` in ``conf/base.yaml``)
    have no default here, so a caller cannot silently run another extraction than the one it means.

    Args:
        models_dir: Directory holding the model files.
        detector_spec: Detector registry entry (``models.detector`` of the configuration).
        recogniser_specs: Recogniser entries; the first fills each face's ``embedding``.
        detect_size: Detector letterbox side (multiple of 32).
        score_threshold: Detector score threshold.
        nms_iou: Detector NMS IoU.
        threads: onnxruntime intra-op threads per model (pin to the task's cores).
        batch_size: Crops per recogniser call, and photos decoded and detected per chunk.
        detect_batch_size: Photos per detector call (default ``batch_size``).
        flip_tta: Average each embedding with its mirror's: one setting for every recogniser, or one per
            recogniser (in ``recogniser_specs`` order; a fusion may flip one member and not another).
        quality_rule: Quality thresholds (default `QualityRule()`).
        max_pixels: Decode limit.
        align_method: Similarity fit, ``"lstsq"`` or ``"lmeds"``.
        fusion_weights: Per recogniser, its weight in the fused ``embedding`` (None: the first one's).
        mirrored: Recognisers (by name) that also embed each mirrored crop, as ``<name>~mirror`` in each face's
            ``embeddings`` (:class:`udfs.embed.MirroredEmbedder`).
        cached: Reuse a pipeline built with the same arguments in this process.
    """
    rule = quality_rule or QualityRule()
    flips = (flip_tta,) * len(recogniser_specs) if isinstance(flip_tta, bool) else tuple(bool(f) for f in flip_tta)
    if len(flips) != len(recogniser_specs):
        raise ValueError(f"{len(flips)} flip_tta settings for {len(recogniser_specs)} recognisers")
    mirrors = tuple(sorted(set(mirrored)))
    unknown = set(mirrors) - {s.name for s in recogniser_specs}
    if unknown:
        raise ValueError(f"mirrored recognisers {sorted(unknown)} are not among the pipeline's")

    def factory() -> FacePipeline:
        detector = FaceDetector(
            detector_spec,
            models_dir,
            detect_size,
            score_threshold,
            nms_iou,
            threads=threads,
            max_batch=detect_batch_size or batch_size,
        )
        embedders = {
            spec.name: FaceEmbedder(spec, models_dir, threads=threads, batch_size=batch_size, flip_tta=flip)
            for spec, flip in zip(recogniser_specs, flips, strict=True)
        }
        for spec in recogniser_specs:
            if spec.name in mirrors:
                embedders[spec.name + MIRROR] = MirroredEmbedder(spec, models_dir, threads=threads,
                                                                  batch_size=batch_size, flip_tta=False)
        return FacePipeline(detector, embedders, rule, max_pixels, batch_size, align_method, fusion_weights)

    if not cached:
        return factory()
    key = cache_key(
        detector_spec, threads, Path(models_dir), *(s.model_id for s in recogniser_specs), detect_size,
        score_threshold, nms_iou, batch_size, detect_batch_size, flips, rule, max_pixels, align_method,
        fusion_weights, mirrors,
    )  # fmt: skip
    return get_cached(key, factory)
