"""De-duplication finds the planted duplicate enrolments; clusters and incremental mode."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.lake.tables import read_table
from jobs import dedup
from jobs.dedup import connected_components
from tests.conftest import PipelineLake


def test_planted_duplicates_are_found(spark: SparkSession, pipeline_lake: PipelineLake) -> None:
    cfg, truth = pipeline_lake.cfg, pipeline_lake.truth
    rows = read_table(spark, cfg, "duplicate_candidates").filter(F.col("run_id") == "t-dedup").collect()
    planted = {
        frozenset((a, b)) for a, ta in truth.items() for b, tb in truth.items()
        if a < b and ta["kind"] == tb["kind"] == "planted_duplicate" and ta["identity"] == tb["identity"]
    }
    found = {frozenset((r["record_id_a"], r["record_id_b"])) for r in rows}
    assert all(r["record_id_a"] != r["record_id_b"] for r in rows)
    assert all((r["record_id_a"], r["photo_id_a"]) < (r["record_id_b"], r["photo_id_b"]) for r in rows)
    assert len(found) == len(rows), "each pair once"
    assert len(planted & found) >= 0.5 * len(planted), (len(planted & found), len(planted))
    clusters = read_table(spark, cfg, "duplicate_clusters").filter(F.col("run_id") == "t-dedup").collect()
    assert {r["record_id"] for r in clusters} == {x for pair in found for x in pair}


def test_incremental_rerun_searches_only_new_faces(spark: SparkSession, pipeline_lake: PipelineLake) -> None:
    res = dedup.run(spark, pipeline_lake.cfg, run_id="t-dedup-incremental")
    assert res.searched == 0 and res.candidates == 0
    assert res.clusters == pipeline_lake.results["dedup"].clusters  # type: ignore[attr-defined]


def test_a_change_of_the_gallery_rule_makes_the_next_run_full(spark: SparkSession, pipeline_lake: PipelineLake) -> None:
    """Faces a change of ``index.gallery_quality`` lets into the index were extracted long ago: an incremental
    run would never search them, so the first run under a new rule searches everything."""
    cfg = pipeline_lake.cfg
    assert dedup.last_dedup_start(spark, cfg, "t-dedup-next") is not None
    assert dedup.last_dedup_start(spark, cfg.with_overrides(["index.gallery_quality=exclude"]), "t-dedup-next") is None


def test_rerun_of_a_run_id_writes_the_same_candidates(spark: SparkSession, pipeline_lake: PipelineLake) -> None:
    def pairs() -> list[tuple]:
        rows = read_table(spark, pipeline_lake.cfg, "duplicate_candidates").filter(F.col("run_id") == "t-dedup")
        return sorted(tuple(r) for r in rows.select("pair_id", "score", "band").collect())

    before = pairs()
    assert before
    dedup.run(spark, pipeline_lake.cfg, run_id="t-dedup")  # a retried task of the same night
    assert pairs() == before


def test_connected_components_keep_the_strongest_link() -> None:
    rows = connected_components([("a", "b", 0.5, "possible"), ("b", "c", 0.9, "strong"), ("x", "y", 0.6, "strong")])
    by_record = {r[2]: r for r in rows}
    assert by_record["a"][0] == by_record["c"][0] == "a" and by_record["a"][1] == 3
    assert by_record["b"][3:5] == ("c", 0.9)
    assert by_record["x"][0] == "x" and by_record["x"][1] == 2
