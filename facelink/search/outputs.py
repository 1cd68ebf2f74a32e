"""One Spark transform per table a search run writes: ``matches`` and ``probe_status`` (match),
``duplicate_candidates`` (dedup, from :func:`transform_pairs`). Pure: no I/O, the plan gives thresholds and
estimates."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from facelink.search.plan import SearchPlan


def transform_matches(hits: DataFrame, queries: DataFrame, gallery: DataFrame, plan: SearchPlan,
                      run_id: str) -> DataFrame:
    """``matches`` rows: each probe query's hits with the candidate's ids and quality, estimates and band.

    Args:
        hits: ``(qid, rank, score, face_id)`` at or above the floor (:meth:`SearchPlan.search`).
        queries: The probe faces searched: ``qid, record_id, photo_id, face_index, quality_ok, det_score``.
        gallery: Searchable gallery faces with ``face_id`` (:func:`facelink.index.gallery.searchable_faces`).
        plan: The run's plan.
        run_id: The match run.
    """
    candidates = gallery.select(
        "face_id", F.col("record_id").alias("candidate_record_id"),
        F.col("photo_id").alias("candidate_photo_id"), F.col("face_index").alias("candidate_face_index"),
        F.col("quality_ok").alias("candidate_quality_ok"), F.col("det_score").alias("candidate_det_score"),
    )
    return (
        hits.join(queries.drop("embedding"), "qid", how="inner")
        .join(candidates, "face_id", how="inner")
        .select(
            F.lit(run_id).alias("run_id"), F.col("record_id").alias("probe_record_id"),
            F.col("photo_id").alias("probe_photo_id"), F.col("face_index").alias("probe_face_index"),
            "candidate_record_id", "candidate_photo_id", "candidate_face_index", "rank", "score",
            plan.est_fpir(F.col("score")).alias("est_fpir"), plan.band(F.col("score")).alias("band"),
            F.col("quality_ok").alias("probe_quality_ok"), "candidate_quality_ok",
            F.col("det_score").alias("probe_det_score"), "candidate_det_score", F.lit(plan.model_id).alias("model_id"),
            F.lit(plan.index_version).alias("index_version"),
            F.lit(plan.gallery_size).cast("long").alias("gallery_size"),
            F.lit(plan.floor).cast("float").alias("threshold_score"),
        )
    )


def transform_probe_status(probe_photos: DataFrame, probe_faces: DataFrame, matches: DataFrame,
                           run_id: str) -> DataFrame:
    """One row per probe photo: searched (with its candidates) or why not."""
    primary = probe_faces.filter(F.col("is_primary") | (F.col("face_index") < 0)).select(
        "photo_id", F.col("status").alias("face_status"), F.col("error").alias("face_error")
    ).dropDuplicates(["photo_id"])
    top = matches.groupBy("probe_photo_id").agg(
        F.count("*").cast("int").alias("n_candidates"), F.max("score").alias("top_score"),
        F.min_by("band", F.col("rank")).alias("top_band"),
    )
    joined = probe_photos.join(primary, "photo_id", how="left").join(
        top, probe_photos["photo_id"] == top["probe_photo_id"], how="left"
    )
    status = F.when(F.col("face_status").isNull(), F.lit("not_extracted")).when(
        F.col("face_status") == "ok", F.lit("searched")).otherwise(F.col("face_status"))
    reason = F.when(F.col("face_status").isNull(), F.lit("no faces row for this model: run extract")).when(
        F.col("face_status") == "ok", F.lit(None)).otherwise(F.coalesce("face_error", "face_status"))
    return joined.select(
        F.lit(run_id).alias("run_id"), F.col("record_id").alias("probe_record_id"),
        F.col("photo_id").alias("probe_photo_id"), status.alias("status"), reason.alias("reason"),
        F.coalesce("n_candidates", F.lit(0)).alias("n_candidates"), "top_score", "top_band",
    )


def transform_pairs(hits: DataFrame, queries: DataFrame, gallery: DataFrame, floor: float) -> DataFrame:
    """Hits -> unordered pairs of different records above ``floor``, each pair once with its best score."""
    side_q = queries.select("qid", F.col("record_id").alias("q_record"), F.col("photo_id").alias("q_photo"),
                            F.col("face_id").alias("q_face"), F.col("quality_ok").alias("q_quality"),
                            F.col("det_score").alias("q_det"))
    side_g = gallery.select("face_id", F.col("record_id").alias("g_record"), F.col("photo_id").alias("g_photo"),
                            F.col("quality_ok").alias("g_quality"), F.col("det_score").alias("g_det"))
    joined = (
        hits.filter(F.col("score") >= F.lit(floor))
        .join(side_q, "qid", how="inner")
        .join(side_g, "face_id", how="inner")
        .filter((F.col("face_id") != F.col("q_face")) & (F.col("q_record") != F.col("g_record")))
    )
    q_first = F.struct("q_record", "q_photo") < F.struct("g_record", "g_photo")

    def side(q: str, g: str) -> F.Column:
        return F.when(q_first, F.col(q)).otherwise(F.col(g))

    pairs = joined.select(
        side("q_record", "g_record").alias("record_id_a"), side("q_photo", "g_photo").alias("photo_id_a"),
        side("g_record", "q_record").alias("record_id_b"), side("g_photo", "q_photo").alias("photo_id_b"),
        "score",
        side("q_quality", "g_quality").alias("quality_ok_a"), side("g_quality", "q_quality").alias("quality_ok_b"),
        side("q_det", "g_det").alias("det_score_a"), side("g_det", "q_det").alias("det_score_b"),
    )
    pair_id = F.sha2(F.concat_ws("|", "record_id_a", "photo_id_a", "record_id_b", "photo_id_b"), 256)
    best = pairs.withColumn("pair_id", pair_id).groupBy("pair_id").agg(
        F.max_by(F.struct(*[c for c in pairs.columns]), F.col("score")).alias("p")
    )
    return best.select("pair_id", "p.*")


def transform_candidates(pairs: DataFrame, plan: SearchPlan, run_id: str) -> DataFrame:
    """``duplicate_candidates`` rows: the pairs of :func:`transform_pairs` with estimates and band."""
    return pairs.select(
        F.lit(run_id).alias("run_id"), "pair_id", "record_id_a", "photo_id_a", "record_id_b", "photo_id_b",
        "score", plan.est_fmr(F.col("score")).alias("est_fmr"), plan.est_fpir(F.col("score")).alias("est_fpir"),
        plan.band(F.col("score")).alias("band"), "quality_ok_a", "quality_ok_b", "det_score_a",
        "det_score_b", F.lit(plan.model_id).alias("model_id"), F.lit(plan.index_version).alias("index_version"),
    )
