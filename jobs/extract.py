"""Detect, align, score quality and embed the faces of ``photos`` into the ``faces`` Delta table.

Incremental: only photos without ``faces`` rows for the configured recogniser's ``model_id`` are processed,
so a rerun adds nothing and switching the model adds rows for the new model beside the old ones. The work
runs in ``mapInPandas`` over Arrow batches: the models load once per Python worker (cached by a key made of
plain values chosen on the driver) and thread counts are pinned to the task's cores.

Run: ``python -m jobs.extract --env local [--role gallery|probe] [--set models.recogniser=dlib_resnet34_128d]``.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from facelink.config import Config
from facelink.errors import AccountingError
from facelink.lake.runs import RunRecorder, new_run_id
from facelink.lake.tables import insert_new, read_table
from facelink.models import Recogniser, model_spec, recogniser_id
from facelink.models import recogniser as recogniser_of
from facelink.progress import stopwatch
from schemas import get_spec
from udfs.models import ModelSpec

log = logging.getLogger(__name__)
JOB = "extract"

FACES = get_spec("faces")
#: What the UDF returns: the ``faces`` columns less the run's own two.
UDF_SCHEMA = T.StructType([f for f in FACES.schema.fields if f.name not in ("extract_run_id", "extracted_at")])


@dataclass(frozen=True)
class ExtractSettings:
    """Plain, picklable values the driver hands to the executors' UDF (no config files there)."""

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
    quality: dict[str, Any]

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
            quality=asdict(cfg.quality),
        )


def photo_rows(meta: dict[str, Any], result: Any, model_id: str) -> list[dict[str, Any]]:
    """``faces`` rows (less run columns) of one photo's :class:`udfs.pipeline.PhotoResult`."""
    base = {**dict.fromkeys(UDF_SCHEMA.fieldNames()), **meta, "model_id": model_id, "n_faces": len(result.faces)}
    if not result.faces:
        error = result.error_code if result.status != "no_face" else None
        if result.error_detail:
            error = f"{error}: {result.error_detail}" if error else result.error_detail
        return [{**base, "face_index": -1, "status": result.status, "error": error, "is_primary": False,
                 "quality_ok": False, "quality_reasons": [result.status]}]
    rows = []
    for face in result.faces:
        rows.append({
            **base, "face_index": int(face["face_index"]), "status": "ok", "error": None,
            "is_primary": bool(face["is_primary"]),
            "box": np.asarray(face["box"], np.float32).tolist(),
            "landmarks": np.asarray(face["landmarks"], np.float32).reshape(-1).tolist(),
            "det_score": float(face["det_score"]), "face_width": float(face["face_width_px"]),
            "inter_eye_px": float(face["inter_eye_px"]), "sharpness": float(face["sharpness"]),
            "brightness": float(face["brightness"]), "contrast": float(face["contrast"]),
            "roll_deg": float(face["roll_deg"]), "yaw": float(face["yaw_proxy"]),
            "quality_ok": bool(face["quality_ok"]), "quality_reasons": list(face["quality_reasons"]),
            "embedding": np.asarray(face["embedding"], np.float32).tolist(),
        })
    return rows


def make_extract_fn(settings: ExtractSettings) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The ``mapInPandas`` function: photo rows in, ``faces`` rows out; models cached per Python worker."""

    def extract(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import cv2

        from udfs.pipeline import build_pipeline
        from udfs.quality import QualityRule

        cv2.setNumThreads(settings.threads)
        rec = settings.recogniser
        pipeline = build_pipeline(
            settings.models_dir, settings.detector, rec.members, detect_size=settings.detect_size,
            score_threshold=settings.score_threshold, nms_iou=settings.nms_iou, threads=settings.threads,
            batch_size=settings.batch_size, detect_batch_size=settings.detect_batch_size,
            flip_tta=rec.member_flips(settings.flip_tta),
            align_method=settings.align_method,  # type: ignore[arg-type]  # validated by the configuration
            quality_rule=QualityRule(**settings.quality), max_pixels=settings.max_pixels,
            fusion_weights=rec.weights if rec.fused else None,
        )
        model_id = settings.model_id
        columns = UDF_SCHEMA.fieldNames()
        for batch in batches:
            results = pipeline.process_batch([bytes(c) for c in batch["content"]])
            rows: list[dict[str, Any]] = []
            for i, result in enumerate(results):
                meta = {k: batch[k].iat[i] for k in ("record_id", "photo_id", "role", "partition")}
                rows.extend(photo_rows(meta, result, model_id))
            # Build from records with every key present: a missing list cell would become NaN, not null.
            yield pd.DataFrame.from_records(rows, columns=columns)

    return extract


def transform_pending(photos: DataFrame, faces: DataFrame, model_id: str, role: str | None) -> DataFrame:
    """Photos that have no ``faces`` rows for ``model_id`` yet (optionally of one role)."""
    if role:
        photos = photos.filter(F.col("role") == role)
    # No distinct(): an anti-join needs only the keys, and the aggregation would add a shuffle.
    done = faces.filter(F.col("model_id") == model_id).select("record_id", "photo_id")
    return photos.join(done, ["record_id", "photo_id"], how="left_anti").select(
        "record_id", "photo_id", "role", "partition", "content"
    )


def task_count(n_photos: int, photos_per_partition: int, parallelism: int) -> int:
    """Tasks for ``n_photos``: about ``photos_per_partition`` each, in full waves over ``parallelism`` cores.

    5 tasks on 2 cores run in 3 waves, the last one on one core; 6 smaller tasks take the same 3 waves with
    both cores busy. No task is left without a photo.
    """
    if n_photos <= 0:
        return 1
    tasks = math.ceil(n_photos / max(1, photos_per_partition))
    waves = math.ceil(tasks / max(1, parallelism))
    return max(1, min(n_photos, waves * max(1, parallelism)))


def transform_extract(pending: DataFrame, settings: ExtractSettings, n_partitions: int, run_id: str) -> DataFrame:
    """Run the face pipeline over ``pending`` photos; returns ``faces`` rows."""
    # Round-robin, not hashed on photo_id: hashing gave tasks of 463 to 577 photos for 500 and the largest set
    # the stage's end (Spark sorts each input partition first, so a retried task sends the same rows again).
    return (
        pending.repartition(n_partitions)
        .mapInPandas(make_extract_fn(settings), schema=UDF_SCHEMA)
        .withColumn("extract_run_id", F.lit(run_id))
        .withColumn("extracted_at", F.current_timestamp())
    )


@dataclass(frozen=True)
class ExtractResult:
    run_id: str
    model_id: str
    photos: int
    faces: int
    status_rows: int
    tasks: int = 0


def run(spark: SparkSession, cfg: Config, role: str | None = None, run_id: str | None = None,
        recogniser: str | None = None) -> ExtractResult:
    """Extract faces of every photo not yet processed with the configured recogniser."""
    settings = ExtractSettings.from_config(cfg, recogniser)
    model_id = settings.model_id
    run_id = run_id or new_run_id(JOB)
    with RunRecorder(spark, cfg, JOB, run_id, model_id=model_id) as rec:
        # Both tables are read at the versions recorded for the run, so that the count of pending photos and
        # the pipeline's input are the same photos even while another job writes.
        seconds: dict[str, float] = {}
        with stopwatch(seconds, "open"):
            photos = read_table(spark, cfg, "photos", rec.read("photos"))
            faces = read_table(spark, cfg, "faces", rec.read("faces"))
        with stopwatch(seconds, "pending"):
            # Counted over ids only: the scan skips the photos' content column.
            n_photos = transform_pending(photos, faces, model_id, role).select("photo_id").count()
        n_parts = task_count(n_photos, cfg.extract.photos_per_partition, spark.sparkContext.defaultParallelism)
        log.info("extract %s: %d photos to process with %s in %d tasks", run_id, n_photos, model_id, n_parts)
        with stopwatch(seconds, "pipeline"):
            # The face pipeline runs once, into a local checkpoint that the counts and the merge both read.
            rows = transform_extract(transform_pending(photos, faces, model_id, role), settings, n_parts,
                                     run_id).localCheckpoint(eager=True)
        try:
            with stopwatch(seconds, "check"):
                totals = rows.agg(
                    F.count_distinct("record_id", "photo_id").alias("photos"),
                    F.count(F.when(F.col("face_index") >= 0, 1)).alias("faces"),
                    F.count(F.when(F.col("face_index") < 0, 1)).alias("status_rows"),
                ).first()
                photos_out, n_faces, n_status = (int(totals[c]) if totals else 0
                                                 for c in ("photos", "faces", "status_rows"))
                if photos_out != n_photos:
                    raise AccountingError(f"extract lost photos: {n_photos} in, {photos_out} with rows out")
            with stopwatch(seconds, "merge"):
                inserted = insert_new(spark, cfg, FACES, rows, pinned=True) if n_faces + n_status else 0
                if inserted != n_faces + n_status:
                    log.warning("extract %s: %d of %d faces rows were already there (a concurrent extract of the "
                                "same photos): kept as they were", run_id, n_faces + n_status - inserted,
                                n_faces + n_status)
        finally:
            rows.unpersist()
        rec.detail.update(seconds={k: round(v, 2) for k, v in seconds.items()}, tasks=n_parts)
        log.info("extract %s: seconds by stage %s", run_id, rec.detail["seconds"])
        result = ExtractResult(run_id, model_id, n_photos, n_faces, n_status, n_parts)
        rec.counts.update(photos=n_photos, faces=result.faces, status_rows=result.status_rows)
        rec.wrote("faces")
        return result


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--role", choices=["gallery", "probe"], default=None, help="default: both")
    parser.add_argument("--recogniser", default=None,
                        help="registry or models.fusions name; default models.recogniser")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        res = run(spark, cfg, args.role, args.run_id, args.recogniser)
        print(f"extract {res.run_id} ({res.model_id}): {res.photos} photos -> {res.faces} faces, "
              f"{res.status_rows} photos without a usable face")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
