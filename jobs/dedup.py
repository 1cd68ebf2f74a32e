"""Archive self-search for duplicate enrolments: CANDIDATE pairs of different records, and their clusters.

Every searchable gallery face (or, in incremental mode, those extracted since the last successful dedup
run, when that run searched under the same ``index.gallery_quality``) is searched against the published
gallery index. Hits on the face itself or on the same record are dropped; pairs of different record ids
scoring at or above the loosest band of ``dedup.bands`` (FPIR levels for the gallery's size, turned into
thresholds by the calibration's measured FPIR model) are written to ``duplicate_candidates`` with the
estimated FMR and FPIR (each clamped to the smallest rate its calibration measured) and the band, each pair
once (side a is the smaller (record_id, photo_id)). All current candidate pairs are then grouped into
connected components in ``duplicate_clusters``, each member with the strongest link that joined it.

Requires operator, purpose and authority like matching; reruns with the same run id replace their rows.

Run: ``python -m jobs.dedup --env local --set audit.operator=... --set audit.purpose=duplicate_enrolment_check
--set audit.authority=... [--full]``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.index.gallery import UNRECORDED_GALLERY_QUALITY, searchable_faces
from facelink.lake.runs import RunRecorder, new_run_id, require_accountability
from facelink.lake.tables import read_table, replace_where
from facelink.registry import recogniser_id
from facelink.search.outputs import transform_candidates, transform_pairs
from facelink.search.plan import plan_search
from schemas import get_spec

log = logging.getLogger(__name__)
JOB = "dedup"


def last_dedup_start(spark: SparkSession, cfg: Config, run_id: str) -> object | None:
    """Start time of the last successful dedup run before ``run_id`` (incremental mode searches faces
    extracted after it); None when there is none, or when that run searched under another
    ``index.gallery_quality`` (the faces a change lets into the index have never searched: a full run).

    Earlier attempts of ``run_id`` itself, and runs that started after its first attempt, do not count: a
    retried or re-run night then searches the same faces again and replaces its rows with the same pairs.
    """
    runs = read_table(spark, cfg, "runs").filter(F.col("job") == JOB)
    first = runs.filter(F.col("run_id") == run_id).agg(F.min("started_at").alias("t")).first()
    earlier = runs.filter((F.col("status") == "succeeded") & (F.col("run_id") != run_id))
    if first is not None and first["t"] is not None:
        earlier = earlier.filter(F.col("started_at") < F.lit(first["t"]))
    row = earlier.orderBy(F.col("started_at").desc()).select("run_id", "started_at").first()
    if row is None:
        return None
    audit = read_table(spark, cfg, "audit").filter(
        (F.col("job") == JOB) & (F.col("run_id") == row["run_id"]) & (F.col("outcome") == "succeeded"))
    rules = {json.loads(a["detail"] or "{}").get("gallery_quality", UNRECORDED_GALLERY_QUALITY)
             for a in audit.select("detail").collect()}
    if rules != {cfg.index.gallery_quality}:
        log.info("last dedup run %s searched with gallery_quality %s, configured %s: a full run", row["run_id"],
                 sorted(rules), cfg.index.gallery_quality)
        return None
    return row["started_at"]


def connected_components(edges: Iterable[tuple[str, str, float, str]]) -> list[tuple[str, int, str, str, float, str]]:
    """Clusters of records linked by candidate pairs (union-find on the driver: candidate pairs are few).

    Returns:
        ``(cluster_id, cluster_size, record_id, strongest_link_record_id, strongest_link_score, band)`` rows;
        the cluster id is the cluster's smallest record id.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    best: dict[str, tuple[float, str, str]] = {}
    for a, b, score, band in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
        for me, other in ((a, b), (b, a)):
            if me not in best or score > best[me][0]:
                best[me] = (score, other, band)
    members: dict[str, list[str]] = {}
    for record in best:
        members.setdefault(find(record), []).append(record)
    rows = []
    for group in members.values():
        cluster_id = min(group)
        for record in sorted(group):
            score, other, band = best[record]
            rows.append((cluster_id, len(group), record, other, score, band))
    return rows


@dataclass(frozen=True)
class DedupResult:
    run_id: str
    index_version: str
    searched: int
    candidates: int
    clusters: int
    threshold_score: float


def run(spark: SparkSession, cfg: Config, run_id: str | None = None, full: bool | None = None) -> DedupResult:
    """Search gallery faces against the gallery index; write candidate pairs and clusters for review."""
    model_id = recogniser_id(cfg)
    run_id = run_id or new_run_id(JOB)
    incremental = cfg.dedup.incremental if full is None else not full
    with RunRecorder(spark, cfg, JOB, run_id, model_id=model_id) as rec:
        require_accountability(cfg, JOB)
        since = last_dedup_start(spark, cfg, run_id) if incremental else None
        for table in ("faces", "index_manifest", "duplicate_candidates"):
            rec.read(table)
        plan = plan_search(spark, cfg, model_id, cfg.dedup.bands)
        rec.index_version = plan.index_version
        rec.detail.update(plan.audit_detail())
        rec.detail.update(incremental_since=str(since) if since else None)

        searchable = searchable_faces(read_table(spark, cfg, "faces"), model_id, plan.gallery_quality)
        # The pairs need only the gallery side's ids and quality: cache those, and the embeddings once (queries).
        gallery = searchable.select("face_id", "record_id", "photo_id", "quality_ok", "det_score").cache()
        queries = searchable if since is None else searchable.filter(F.col("extracted_at") > F.lit(since))
        queries = queries.withColumn("qid", F.col("face_id")).cache()
        try:
            hits = plan.search(queries, cfg.dedup.k + 1, cfg.index.search_threads)
            candidates = transform_candidates(transform_pairs(hits, queries, gallery, plan.floor), plan, run_id)
            replace_where(spark, cfg, get_spec("duplicate_candidates"), candidates, "run_id", run_id)
            searched = queries.count()
        finally:
            queries.unpersist()
            gallery.unpersist()
        clusters = write_clusters(spark, cfg, run_id)
        n_candidates = read_table(spark, cfg, "duplicate_candidates").filter(F.col("run_id") == run_id).count()
        rec.counts.update(searched=searched, candidates=n_candidates, clusters=clusters)
        rec.wrote("duplicate_candidates")
        rec.wrote("duplicate_clusters")
        return DedupResult(run_id, plan.index_version, searched, n_candidates, clusters, plan.floor)


def write_clusters(spark: SparkSession, cfg: Config, run_id: str) -> int:
    """Cluster every current candidate pair (all runs, records still in the archive); return the count."""
    present = read_table(spark, cfg, "photos").select("record_id").distinct()
    cand = read_table(spark, cfg, "duplicate_candidates")
    live = cand.join(present.withColumnRenamed("record_id", "record_id_a"), "record_id_a", how="left_semi").join(
        present.withColumnRenamed("record_id", "record_id_b"), "record_id_b", how="left_semi")
    edges = [(r["record_id_a"], r["record_id_b"], float(r["score"]), r["band"])
             for r in live.select("record_id_a", "record_id_b", "score", "band").collect()]
    rows = [(run_id, *row) for row in connected_components(edges)]
    spec = get_spec("duplicate_clusters")
    replace_where(spark, cfg, spec, spark.createDataFrame(rows, spec.schema), "run_id", run_id)
    return len({r[1] for r in rows})


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--full", action="store_true", help="search every gallery face, not only new ones")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        res = run(spark, cfg, args.run_id, True if args.full else None)
        print(f"dedup {res.run_id}: {res.searched} faces searched against index {res.index_version}; "
              f"{res.candidates} candidate pairs in {res.clusters} clusters at score >= {res.threshold_score:.4f}. "
              "Candidates are for trained human review, not findings.")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
