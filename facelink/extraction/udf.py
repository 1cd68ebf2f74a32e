"""The extraction UDF: photo rows in, face rows out, through :func:`build_extraction_pipeline` on each executor.

One ``mapInPandas`` function serves every extraction: the ``faces`` rows of ``jobs.extract`` and the calibration
(``output="faces"``), and the evaluation's variant passes (``output="primary"``: one row per photo with its
primary face's embedding by member, mirrored crops included). Models load once per Python worker, cached by
a key made of plain values chosen on the driver, and thread counts are pinned to the task's cores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from facelink.extraction.settings import ExtractSettings, build_extraction_pipeline
from schemas import get_spec

FACES = get_spec("faces")
#: What the UDF returns for ``faces``: the ``faces`` columns less the run's own two.
UDF_SCHEMA = T.StructType([f for f in FACES.schema.fields if f.name not in ("extract_run_id", "extracted_at")])
#: What the UDF returns for ``primary``: one row per photo, its primary face's embedding by member.
PRIMARY_SCHEMA = T.StructType([
    T.StructField("record_id", T.StringType()),
    T.StructField("photo_id", T.StringType()),
    T.StructField("status", T.StringType()),
    T.StructField("n_faces", T.IntegerType()),
    T.StructField("det_score", T.FloatType()),
    T.StructField("quality_ok", T.BooleanType()),
    T.StructField("inter_eye_px", T.FloatType()),
    T.StructField("sharpness", T.FloatType()),
    T.StructField("embeddings", T.MapType(T.StringType(), T.ArrayType(T.FloatType()))),
])


def output_schema(settings: ExtractSettings) -> T.StructType:
    """The schema of the UDF's rows under ``settings.output``."""
    return UDF_SCHEMA if settings.output == "faces" else PRIMARY_SCHEMA


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


def primary_row(record_id: str, photo_id: str, result: Any) -> tuple[Any, ...]:
    """The ``primary`` row of one photo's :class:`udfs.pipeline.PhotoResult` (see :data:`PRIMARY_SCHEMA`)."""
    face = result.primary
    if face is None:
        return (record_id, photo_id, result.status, 0, None, False, None, None, None)
    embs = {k: np.asarray(v, np.float32).tolist() for k, v in face["embeddings"].items()}
    return (record_id, photo_id, "ok", len(result.faces), float(face["det_score"]), bool(face["quality_ok"]),
            float(face["inter_eye_px"]), float(face["sharpness"]), embs)


def make_extract_fn(settings: ExtractSettings) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The ``mapInPandas`` function: photo rows in, rows of :func:`output_schema` out; models cached per worker."""

    def extract(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import cv2

        cv2.setNumThreads(settings.threads)
        pipeline = build_extraction_pipeline(settings)
        columns = output_schema(settings).fieldNames()
        for batch in batches:
            results = pipeline.process_batch([bytes(c) for c in batch["content"]])
            if settings.output == "primary":
                records = [primary_row(rid, pid, result) for rid, pid, result
                           in zip(batch["record_id"], batch["photo_id"], results, strict=True)]
                yield pd.DataFrame.from_records(records, columns=columns)
                continue
            rows: list[dict[str, Any]] = []
            for i, result in enumerate(results):
                meta = {k: batch[k].iat[i] for k in ("record_id", "photo_id", "role", "partition")}
                rows.extend(photo_rows(meta, result, settings.model_id))
            # Build from records with every key present: a missing list cell would become NaN, not null.
            yield pd.DataFrame.from_records(rows, columns=columns)

    return extract


def transform_extract(pending: DataFrame, settings: ExtractSettings, n_partitions: int, run_id: str) -> DataFrame:
    """Run the face pipeline over ``pending`` photos; returns ``faces`` rows."""
    if settings.output != "faces":
        raise ValueError(f"transform_extract writes faces rows, not {settings.output!r} rows")
    # Round-robin, not hashed on photo_id: hashing gave tasks of 463 to 577 photos for 500 and the largest set
    # the stage's end (Spark sorts each input partition first, so a retried task sends the same rows again).
    return (
        pending.repartition(n_partitions)
        .mapInPandas(make_extract_fn(settings), schema=UDF_SCHEMA)
        .withColumn("extract_run_id", F.lit(run_id))
        .withColumn("extracted_at", F.current_timestamp())
    )
