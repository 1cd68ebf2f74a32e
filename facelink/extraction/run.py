"""Incremental extraction into ``faces``: the photos without rows for the recogniser's ``model_id``, in whole
waves of tasks, counted before and after, merged by key (a rerun adds nothing)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.errors import AccountingError
from facelink.extraction.settings import ExtractSettings
from facelink.extraction.udf import FACES, transform_extract
from facelink.lake.runs import RunRecorder, new_run_id
from facelink.lake.tables import insert_new, read_table
from facelink.progress import stopwatch

log = logging.getLogger(__name__)
#: The job name the extraction's runs are recorded under.
JOB = "extract"


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


@dataclass(frozen=True)
class ExtractResult:
    run_id: str
    model_id: str
    photos: int
    faces: int
    status_rows: int
    tasks: int = 0


def extract_faces(spark: SparkSession, cfg: Config, role: str | None = None, run_id: str | None = None,
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
