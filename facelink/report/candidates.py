"""The candidates a report puts in front of a reviewer: strong probe candidates and duplicate clusters.

Each candidate becomes a :class:`~facelink.report.data.PairItem` with both faces' quality measurements (from
``faces``), so the reviewer sees how trustworthy each side's image is next to the score and the estimated
error rates. Sections are capped (``limit``); the report says how many were left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.lake.tables import read_table
from facelink.report.data import QUALITY_FIELDS, ClusterItem, FaceSide, PairItem

FaceKey = tuple[str, int]


def strong_matches(spark: SparkSession, cfg: Config, run_id: str, limit: int) -> tuple[list[Any], int]:
    """The ``strong`` candidates of match run ``run_id`` (best score first, at most ``limit``) and their total."""
    strong = read_table(spark, cfg, "matches").filter((F.col("run_id") == run_id) & (F.col("band") == "strong"))
    total = strong.count()
    rows = strong.orderBy(F.desc("score"), "probe_photo_id", "rank").limit(limit).collect()
    return rows, total


def match_items(rows: Iterable[Any], faces: Mapping[FaceKey, Any], reviews: Mapping[tuple[str, str], int],
                fpir_floor: float | None = None) -> list[PairItem]:
    """Match rows -> review items (subject id ``run_id/probe_photo_id/rank``, as ``reviews`` expects).

    A match carries its estimated FPIR only: the per-comparison FMR is not stored for matches, and deriving it
    back through an independence formula would claim what was not measured.
    """
    items = []
    for r in rows:
        subject = f"{r['run_id']}/{r['probe_photo_id']}/{r['rank']}"
        probe = face_side("probe", r["probe_record_id"], r["probe_photo_id"], r["probe_face_index"], faces)
        cand = face_side("gallery candidate", r["candidate_record_id"], r["candidate_photo_id"],
                         r["candidate_face_index"], faces)
        items.append(PairItem(
            "match", subject, f"probe {r['probe_record_id']} · rank {r['rank']}", float(r["score"]),
            None, float(r["est_fpir"]), r["band"], probe, cand,
            r["run_id"], reviews.get(("match", subject), 0), fpir_floor=fpir_floor))
    return items


def current_pairs(spark: SparkSession, cfg: Config) -> DataFrame:
    """Every candidate pair once, as its newest dedup run found it (clusters are built over all runs)."""
    cand = read_table(spark, cfg, "duplicate_candidates")
    runs = read_table(spark, cfg, "runs").filter(F.col("job") == "dedup").groupBy("run_id").agg(
        F.max("started_at").alias("run_started"))
    newest = Window.partitionBy("pair_id").orderBy(F.desc_nulls_last("run_started"), F.desc("run_id"))
    return (cand.join(runs, "run_id", how="left").withColumn("_n", F.row_number().over(newest))
            .filter(F.col("_n") == 1).drop("_n", "run_started"))


def cluster_pairs(spark: SparkSession, cfg: Config, run_id: str) -> tuple[list[Any], list[Any]]:
    """(member rows of dedup run ``run_id``'s clusters, the current pairs linking members of one cluster)."""
    members = read_table(spark, cfg, "duplicate_clusters").filter(F.col("run_id") == run_id).cache()
    try:
        side_a = members.select(F.col("record_id").alias("record_id_a"), F.col("cluster_id"))
        side_b = members.select(F.col("record_id").alias("record_id_b"), F.col("cluster_id").alias("cluster_b"))
        pairs = (current_pairs(spark, cfg).join(side_a, "record_id_a", how="inner")
                 .join(side_b, "record_id_b", how="inner").filter(F.col("cluster_id") == F.col("cluster_b")))
        return members.collect(), pairs.orderBy(F.desc("score")).collect()
    finally:
        members.unpersist()


def cluster_items(member_rows: Iterable[Any], pair_rows: Iterable[Any], faces: Mapping[FaceKey, Any],
                  primary: Mapping[str, int], reviews: Mapping[tuple[str, str], int], limit: int,
                  pairs_per_cluster: int, floors: tuple[float | None, float | None] = (None, None),
                  ) -> tuple[list[ClusterItem], int]:
    """Group members and pairs by cluster; (the ``limit`` clusters with the best scores, the cluster count)."""
    members: dict[str, list[Any]] = {}
    for m in member_rows:
        members.setdefault(m["cluster_id"], []).append(m)
    pairs: dict[str, list[Any]] = {}
    for p in pair_rows:
        pairs.setdefault(p["cluster_id"], []).append(p)
    clusters = []
    for cluster_id, rows in members.items():
        linked = sorted(pairs.get(cluster_id, []), key=lambda p: -float(p["score"]))
        items = tuple(pair_item(p, faces, primary, reviews, floors) for p in linked[:pairs_per_cluster])
        best = max(rows, key=lambda m: float(m["strongest_link_score"]))
        clusters.append(ClusterItem(cluster_id, int(rows[0]["cluster_size"]),
                                    tuple(sorted(m["record_id"] for m in rows)), items, len(linked),
                                    float(best["strongest_link_score"]), best["strongest_link_band"]))
    clusters.sort(key=lambda c: (-c.best_score, c.cluster_id))
    return clusters[:limit], len(clusters)


def pair_item(p: Any, faces: Mapping[FaceKey, Any], primary: Mapping[str, int],
              reviews: Mapping[tuple[str, str], int],
              floors: tuple[float | None, float | None] = (None, None)) -> PairItem:
    """One duplicate candidate pair -> review item (subject: the ``pair_id``); ``floors``: (FMR, FPIR) floors."""
    side_a = face_side("record a", p["record_id_a"], p["photo_id_a"], primary.get(p["photo_id_a"]), faces)
    side_b = face_side("record b", p["record_id_b"], p["photo_id_b"], primary.get(p["photo_id_b"]), faces)
    return PairItem("pair", p["pair_id"], f"{p['record_id_a']} · {p['record_id_b']}", float(p["score"]),
                    float(p["est_fmr"]), float(p["est_fpir"]), p["band"], side_a, side_b, p["run_id"],
                    reviews.get(("pair", p["pair_id"]), 0), fmr_floor=floors[0], fpir_floor=floors[1])


def face_rows(spark: SparkSession, cfg: Config, model_id: str, photo_ids: Iterable[str]
              ) -> tuple[dict[FaceKey, Any], dict[str, int]]:
    """Faces of ``photo_ids`` for ``model_id``: ((photo_id, face_index) -> row, photo_id -> primary face index)."""
    wanted = sorted(set(photo_ids))
    if not wanted:
        return {}, {}
    keys = spark.createDataFrame([(p,) for p in wanted], "photo_id string")
    faces = read_table(spark, cfg, "faces").filter((F.col("model_id") == model_id) & (F.col("face_index") >= 0))
    cols = ["photo_id", "face_index", "is_primary", "quality_ok", "quality_reasons", "box",
            *[name for name, _, _ in QUALITY_FIELDS]]
    rows = faces.join(F.broadcast(keys), "photo_id", how="inner").select(*cols).collect()
    by_key = {(r["photo_id"], int(r["face_index"])): r for r in rows}
    primary = {r["photo_id"]: int(r["face_index"]) for r in rows if r["is_primary"]}
    return by_key, primary


def face_side(label: str, record_id: str, photo_id: str, face_index: int | None,
              faces: Mapping[FaceKey, Any]) -> FaceSide:
    """A side of a candidate with the face's quality measurements (bare ids when the face row is missing)."""
    row = faces.get((photo_id, int(face_index))) if face_index is not None else None
    if row is None:
        return FaceSide(label, record_id, photo_id, face_index)
    measures = {name: float(row[name]) for name, _, _ in QUALITY_FIELDS if row[name] is not None}
    box = tuple(float(v) for v in row["box"]) if row["box"] and len(row["box"]) == 4 else None
    return FaceSide(label, record_id, photo_id, face_index, bool(row["quality_ok"]),
                    tuple(row["quality_reasons"] or ()), measures, box)  # type: ignore[arg-type]
