"""Search a batch of probe photos against the published gallery index: ranked CANDIDATES for human review.

Each probe photo's primary face is searched across all partitions (or ``match.partitions``); up to
``match.k`` gallery faces come back ranked by score, each with the estimated false-positive identification
rate for the gallery's size N from the calibration's measured FPIR model (:mod:`facelink.search.fpir`; clamped to
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

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.errors import InputError
from facelink.index.gallery import searchable_faces
from facelink.lake.runs import RunRecorder, new_run_id, require_accountability
from facelink.lake.tables import read_table, replace_where
from facelink.registry import recogniser_id
from facelink.search.outputs import transform_matches, transform_probe_status
from facelink.search.plan import plan_search
from schemas import get_spec

log = logging.getLogger(__name__)
JOB = "match"


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
        plan = plan_search(spark, cfg, model_id, cfg.match.bands)
        rec.index_version = plan.index_version
        rec.detail.update(plan.audit_detail())
        rec.detail.update(target_fpir=cfg.match.target_fpir, probe_run_id=probe_run_id,
                          target_score=float(plan.calibration.score_at_fpir(cfg.match.target_fpir, plan.gallery_size)))

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
        hits = plan.search(queries, cfg.match.k, cfg.index.search_threads, cfg.match.partitions or None)
        gallery = searchable_faces(read_table(spark, cfg, "faces"), model_id, plan.gallery_quality)
        matches = transform_matches(hits, queries, gallery, plan, run_id).cache()
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
        result = MatchResult(run_id, plan.index_version, n_probes, counts.get("searched", 0), n_candidates, n_strong,
                             plan.floor)
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

