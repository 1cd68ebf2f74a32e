"""The nightly summary: candidates against the sample's ground truth, and the summary read from a real lake."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink import nightly
from facelink.lake.tables import read_table
from facelink.report.summary import duplicate_summary, format_summary, planted_pairs, probe_summary, summarise
from tests.conftest import PipelineLake

TRUTH = {
    "g1": {"role": "gallery", "identity": "ann", "kind": "planted_duplicate"},
    "g2": {"role": "gallery", "identity": "ann", "kind": "planted_duplicate"},
    "g3": {"role": "gallery", "identity": "bob", "kind": "single"},
    "g4": {"role": "gallery", "identity": "cy", "kind": "planted_duplicate"},
    "g5": {"role": "gallery", "identity": "cy", "kind": "planted_duplicate"},
    "p1": {"role": "probe", "identity": "bob", "kind": "mated_probe"},
    "p2": {"role": "probe", "identity": "ann", "kind": "mated_probe"},
    "p3": {"role": "probe", "identity": "dee", "kind": "unmated_probe"},
    "p4": {"role": "probe", "identity": "eve", "kind": "unmated_probe"},
}


def test_planted_pairs_are_gallery_records_of_one_person() -> None:
    assert planted_pairs(TRUTH) == {frozenset(("g1", "g2")), frozenset(("g4", "g5"))}


def test_duplicates_found_per_band_and_other_pairs() -> None:
    pairs = [("g1", "g2", "strong"), ("g4", "g5", "possible"), ("g1", "g3", "possible")]
    out = duplicate_summary(pairs, TRUTH)
    assert out["planted"] == 2 and out["candidate_pairs"] == 3
    assert out["strong"] == {"found": 1, "other_pairs": 0, "recall": 0.5}
    assert out["possible"] == {"found": 1, "other_pairs": 1, "recall": 0.5}
    assert out["any_band"] == {"found": 2, "other_pairs": 1, "recall": 1.0}


def test_probes_at_rank1_and_unmated_with_strong_candidates() -> None:
    rank1 = {"p1": ("g3", "strong"), "p2": ("g3", "possible"), "p3": ("g1", "strong"), "p4": ("g4", "possible")}
    out = probe_summary(rank1, TRUTH)
    assert out["mated_found_at_rank1"] == 1 and out["mated_rank1_rate"] == 0.5
    assert out["unmated_with_strong_candidate"] == 1 and out["unmated_strong_rate"] == 0.5


def test_summary_reads_the_pipeline_lake(spark: SparkSession, pipeline_lake: PipelineLake) -> None:
    run_ids = {"ingest_gallery": "t-ingest-g", "extract": "t-extract", "dedup": "t-dedup", "match": "t-match",
               "never": "no-such-run"}
    out = summarise(spark, pipeline_lake.cfg, run_ids, pipeline_lake.sample / "truth.csv")
    status = {s["step"]: s["status"] for s in out["stages"]}
    assert status == {"ingest_gallery": "succeeded", "extract": "succeeded", "dedup": "succeeded",
                      "match": "succeeded", "never": "not run"}
    assert out["duplicates"]["planted"] > 0 and out["duplicates"]["any_band"]["found"] > 0
    assert out["probes"]["mated_probes"] == sum(t["kind"] == "mated_probe" for t in pipeline_lake.truth.values())
    # candidates with a face failing the quality rule, counted per band from the tables themselves
    dups = read_table(spark, pipeline_lake.cfg, "duplicate_candidates")
    failing = dups.filter(~(F.col("quality_ok_a") & F.col("quality_ok_b")))
    assert out["flagged_quality"]["duplicates"] == {r["band"]: r["count"] for r in failing.groupBy("band").count()
                                                    .collect()}
    matches = read_table(spark, pipeline_lake.cfg, "matches").filter(F.col("run_id") == "t-match")
    failing = matches.filter(~(F.col("probe_quality_ok") & F.col("candidate_quality_ok")))
    assert out["flagged_quality"]["matches"] == {r["band"]: r["count"] for r in failing.groupBy("band").count()
                                                 .collect()}
    text = format_summary(out)
    assert "not identifications" in text and "planted duplicate enrolments" in text
    assert "failing the quality rule (flagged for the reviewer)" in text


def test_every_step_of_the_chain_is_summarised_by_its_run_id() -> None:
    ids = {s.task_id: nightly.run_id(s.task_id, "2026-12-01") for s in nightly.STEPS}
    assert ids["match"] == "match-2026-12-01"
    assert {"ingest_gallery", "extract", "build_index", "dedup", "match", "report"} <= set(ids)
    match_step = next(s for s in nightly.STEPS if s.task_id == "match")
    argv = match_step.argv(nightly.params_for("2026-12-01", "g.csv", "p.csv", "op", "duplicate_enrolment_check",
                                              "application_screening", "CASE"))
    assert "audit.purpose=application_screening" in argv and "ingest_probes-2026-12-01" in argv
