"""The gallery as the matching jobs see it: which faces are searchable, their ids, the index in force."""

from __future__ import annotations

import json
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.lake.tables import read_table


def face_id_col(prefix: str = "") -> Column:
    """The id a face has in the FAISS indexes: xxhash64 of (photo_id, face_index, model_id), top bit cleared.

    Computed the same way wherever it is needed, so no separate id map has to be kept in step. Ids are
    non-negative because the search library pads missing results with -1.
    """
    digest = F.xxhash64(F.col(f"{prefix}photo_id"), F.col(f"{prefix}face_index"), F.col(f"{prefix}model_id"))
    return digest.bitwiseAND(F.lit(0x7FFFFFFFFFFFFFFF))


#: ``index.gallery_quality`` of an index version whose manifest does not say: versions published before the
#: setting existed searched only quality-passing faces.
UNRECORDED_GALLERY_QUALITY = "exclude"


def searchable_faces(faces: DataFrame, model_id: str, gallery_quality: str, role: str = "gallery") -> DataFrame:
    """The primary faces of ``role`` for ``model_id`` that the index holds, with their ``face_id``.

    ``gallery_quality`` is ``index.gallery_quality``: ``flag`` keeps faces failing the quality rule (their
    ``quality_ok`` and reasons travel with every candidate), ``exclude`` drops them.
    """
    if gallery_quality not in ("flag", "exclude"):
        raise ValueError(f"index.gallery_quality must be 'flag' or 'exclude', got {gallery_quality!r}")
    keep = (F.col("role") == role) & (F.col("model_id") == model_id) & (F.col("status") == "ok") & F.col("is_primary")
    if gallery_quality == "exclude":
        keep = keep & F.col("quality_ok")
    return faces.filter(keep).withColumn("face_id", face_id_col())


def manifest_gallery_quality(rows: list[dict[str, Any]]) -> str | None:
    """The ``index.gallery_quality`` an index version was built with (from its manifest rows' ``params``);
    None for no rows.

    Raises:
        ValueError: The rows disagree (a version is built with one setting).
    """
    found = {json.loads(r["params"]).get("gallery_quality", UNRECORDED_GALLERY_QUALITY) for r in rows}
    if len(found) > 1:
        raise ValueError(f"index manifest rows disagree on gallery_quality: {sorted(found)}")
    return found.pop() if found else None


def current_index(spark: SparkSession, cfg: Config, model_id: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The published index version in force for ``model_id`` (the newest) and its manifest rows."""
    manifest = read_table(spark, cfg, "index_manifest").filter(F.col("model_id") == model_id)
    latest = manifest.select("index_version", "built_at").orderBy(F.desc("built_at"), F.desc("index_version")).first()
    if latest is None:
        return None, []
    rows = manifest.filter(F.col("index_version") == latest["index_version"]).collect()
    return str(latest["index_version"]), [r.asDict() for r in rows]
