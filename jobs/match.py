"""Search a batch of probe photos against the published gallery index: ranked CANDIDATES for human review.

Each probe photo's primary face is searched across all partitions (or ``match.partitions``); up to
``match.k`` gallery faces come back ranked by score, each with the estimated false-positive identification
rate for the gallery's size N from the calibration's measured FPIR model (:mod:`facelink.fpir`; clamped to
the smallest FPIR it measured), and a band from ``match.bands`` (FPIR levels turned into thresholds by the
same model). Candidates looser than the loosest band are not stored. Every probe photo gets
a ``probe_status`` row (searched, or why not). Results are candidates, never identifications.

The job refuses to run without ``audit.operator``, an allowed ``audit.purpose`` and ``audit.authority``;
the refusal is audited. Rerunning the same run id replaces that run's rows exactly.

Run: ``python -m jobs.match --env local --set audit.operator=... --set audit.purpose=application_screening
--set audit.authority=... [--probe-run-id INGEST_RUN]``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from facelink.calibration import load_calibration
from facelink.config import Config
from facelink.errors import InputError
from facelink.index.gallery import current_index, rows_for_floor, searchable_faces
from facelink.lake.runs import RunRecorder, new_run_id, require_accountability
from facelink.lake.tables import read_table, replace_where
from facelink.models import recogniser_id
from facelink.scoring import band_col, band_thresholds, fpir_udf, precision_detail
from facelink.search_udf import search_gallery
from schemas import get_spec

log = logging.getLogger(__name__)
JOB = "match"


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


@dataclass(frozen=True)
class MatchResult:
    run_id: str
    index_version: str
    probes: int
    searched: int
    candidates: int
    strong: int
    threshold_score: float


def run(spark: SparkSession, cfg: Config, run_id: str | None = None, probe_run_id: str | None = None) -> MatchResult:
    """Match the probe batch (all probe photos, or those of one ingest run) against the gallery."""
    model_id = recogniser_id(cfg)
    run_id = run_id or new_run_id(JOB)
    with RunRecorder(spark, cfg, JOB, run_id, model_id=model_id) as rec:
        require_accountability(cfg, JOB)
        for table in ("photos", "faces", "index_manifest"):
            rec.read(table)
        version, manifest = current_index(spark, cfg, model_id)
        if version is None:
            raise InputError(f"no published index for {model_id}: run jobs.build_index first")
        rec.index_version = version
        cal = load_calibration(cfg, model_id)
        n = sum(int(r["vector_count"]) for r in manifest)
        thresholds = band_thresholds(cal, cfg.match.bands, n)
        floor = min(thresholds.values())
        manifest = rows_for_floor(manifest, floor, cfg.index.search_breadth)
        rec.detail.update(search_breadth=cfg.index.search_breadth,
                          nprobe={str(r["partition"]): int(r["nprobe"]) for r in manifest})
        log.info("%s %s: floor %.4f, nprobe by partition %s", JOB, run_id, floor, rec.detail["nprobe"])
        rec.detail.update(calibration=cal.version, gallery_size=n, band_thresholds=thresholds,
                          target_fpir=cfg.match.target_fpir,
                          target_score=float(cal.score_at_fpir(cfg.match.target_fpir, n)), probe_run_id=probe_run_id,
                          **precision_detail(cal, cfg.match.bands, n))

        photos = read_table(spark, cfg, "photos").filter(F.col("role") == "probe")
        if probe_run_id:
            photos = photos.filter(F.col("ingest_run_id") == probe_run_id)
        probe_photos = photos.select("record_id", "photo_id").cache()
        faces = read_table(spark, cfg, "faces").filter(F.col("model_id") == model_id)
        probe_faces = faces.join(probe_photos.select("photo_id"), "photo_id", how="inner")
        queries = probe_faces.filter((F.col("status") == "ok") & F.col("is_primary")).select(
            F.monotonically_increasing_id().alias("qid"), "record_id", "photo_id", "face_index", "embedding",
            "quality_ok", "det_score",
        ).cache()
        hits = search_gallery(queries, manifest, version, cfg.match.k, cfg.index.search_threads,
                              cfg.match.partitions or None).filter(F.col("score") >= F.lit(floor))
        gallery = searchable_faces(read_table(spark, cfg, "faces"), model_id).select(
            "face_id", F.col("record_id").alias("candidate_record_id"),
            F.col("photo_id").alias("candidate_photo_id"), F.col("face_index").alias("candidate_face_index"),
            F.col("quality_ok").alias("candidate_quality_ok"), F.col("det_score").alias("candidate_det_score"),
        )
        matches = (
            hits.join(queries.drop("embedding"), "qid", how="inner")
            .join(gallery, "face_id", how="inner")
            .select(
                F.lit(run_id).alias("run_id"), F.col("record_id").alias("probe_record_id"),
                F.col("photo_id").alias("probe_photo_id"), F.col("face_index").alias("probe_face_index"),
                "candidate_record_id", "candidate_photo_id", "candidate_face_index", "rank", "score",
                fpir_udf(cal, n)("score").alias("est_fpir"), band_col(F.col("score"), thresholds).alias("band"),
                F.col("quality_ok").alias("probe_quality_ok"), "candidate_quality_ok",
                F.col("det_score").alias("probe_det_score"), "candidate_det_score", F.lit(model_id).alias("model_id"),
                F.lit(version).alias("index_version"), F.lit(n).cast("long").alias("gallery_size"),
                F.lit(floor).cast("float").alias("threshold_score"),
            )
        ).cache()
        try:
            replace_where(spark, cfg, get_spec("matches"), matches, "run_id", run_id)
            status = transform_probe_status(probe_photos, probe_faces, matches, run_id)
            replace_where(spark, cfg, get_spec("probe_status"), status, "run_id", run_id)
            written = read_table(spark, cfg, "probe_status").filter(F.col("run_id") == run_id)
            counts = {r["status"]: int(r["count"]) for r in written.groupBy("status").count().collect()}
            n_candidates = matches.count()
            n_strong = matches.filter(F.col("band") == "strong").count()
            n_probes = probe_photos.count()
        finally:
            matches.unpersist()
            queries.unpersist()
            probe_photos.unpersist()
        if sum(counts.values()) != n_probes:
            raise InputError(f"probe accounting: {n_probes} probe photos, {sum(counts.values())} status rows")
        result = MatchResult(run_id, version, n_probes, counts.get("searched", 0), n_candidates, n_strong, floor)
        rec.counts.update(probes=n_probes, searched=result.searched, candidates=n_candidates, strong=n_strong,
                          **{f"status_{k}": v for k, v in counts.items() if k != "searched"})
        rec.wrote("matches")
        rec.wrote("probe_status")
        return result


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import RUN_ID, base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--probe-run-id", default=None, type=RUN_ID,
                        help="only probes of this ingest run (default: all)")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        res = run(spark, cfg, args.run_id, args.probe_run_id)
        print(f"match {res.run_id}: {res.probes} probes, {res.searched} searched against index {res.index_version}; "
              f"{res.candidates} candidates ({res.strong} strong) at score >= {res.threshold_score:.4f}. "
              "Candidates are for trained human review, not identifications.")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())

