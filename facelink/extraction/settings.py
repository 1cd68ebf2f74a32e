"""What an extraction runs with: plain, picklable values chosen on the driver, and the pipeline built from them.

No Spark here: :func:`build_extraction_pipeline` runs on executors (once per Python worker, cached) and in
benchmarks and the evaluation's cost measurement (uncached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from facelink.config import Config
from facelink.registry import Recogniser, model_spec, recogniser_id
from facelink.registry import recogniser as recogniser_of
from udfs.face_quality_rule import QualityRule
from udfs.models import ModelSpec
from udfs.pipeline import FacePipeline

#: ``faces``: the ``faces`` table's rows; ``primary``: one row per photo with its primary face's embedding by
#: member (the evaluation's variants).
Output = Literal["faces", "primary"]


@dataclass(frozen=True)
class ExtractSettings:
    """Plain, picklable values the driver hands to the executors' UDF (no config files there).

    Attributes:
        output: What the UDF returns (see :data:`Output`).
        mirrored: Members that also embed the mirrored crop, as ``<name>~mirror`` (the evaluation's flip TTA
            variants; only with ``output="primary"``).
    """

    models_dir: str
    detector: ModelSpec
    recogniser: Recogniser
    model_id: str
    detect_size: int
    score_threshold: float
    nms_iou: float
    threads: int
    batch_size: int
    detect_batch_size: int
    flip_tta: bool
    align_method: str
    max_pixels: int
    quality: QualityRule
    output: Output = "faces"
    mirrored: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: Config, recogniser: str | None = None) -> ExtractSettings:
        return cls(
            models_dir=cfg.resolve(cfg.paths.models_dir),
            detector=model_spec(cfg, cfg.models.detector),
            recogniser=recogniser_of(cfg, recogniser),
            model_id=recogniser_id(cfg, recogniser),
            detect_size=cfg.extract.detect_size,
            score_threshold=cfg.extract.score_threshold,
            nms_iou=cfg.extract.nms_iou,
            threads=cfg.extract.threads_per_task,
            batch_size=cfg.extract.batch_size,
            detect_batch_size=cfg.extract.detect_batch_size,
            flip_tta=cfg.extract.flip_tta,
            align_method=cfg.extract.align_method,
            max_pixels=cfg.ingest.max_pixels,
            quality=cfg.quality,
        )


def build_extraction_pipeline(settings: ExtractSettings, *, threads: int | None = None,
                              cached: bool = True) -> FacePipeline:
    """The face pipeline of ``settings``: each member with its own flip TTA, fused into ``embedding`` for a
    fused recogniser's ``faces`` rows; the ``mirrored`` members also embed the mirrored crop.

    Args:
        settings: The extraction's settings.
        threads: onnxruntime and OpenCV threads (default ``settings.threads``).
        cached: Reuse a pipeline built with the same values in this Python worker.
    """
    from udfs.pipeline import build_pipeline

    rec = settings.recogniser
    return build_pipeline(
        settings.models_dir, settings.detector, rec.members, detect_size=settings.detect_size,
        score_threshold=settings.score_threshold, nms_iou=settings.nms_iou,
        threads=settings.threads if threads is None else threads, batch_size=settings.batch_size,
        detect_batch_size=settings.detect_batch_size, flip_tta=rec.member_flips(settings.flip_tta),
        align_method=settings.align_method,  # type: ignore[arg-type]  # validated by the configuration
        quality_rule=settings.quality, max_pixels=settings.max_pixels,
        fusion_weights=rec.weights if rec.fused and settings.output == "faces" else None,
        mirrored=settings.mirrored, cached=cached,
    )
