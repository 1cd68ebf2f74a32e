"""Matching: accountability, candidates against the ground truth, idempotent reruns."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.errors import RefusedError
from facelink.lake.tables import read_table
from jobs import match
from tests.conftest import PipelineLake


def _audit_rows(spark: SparkSession, pipeline_lake: PipelineLake, run_id: str) -> list:
    return read_table(spark, pipeline_lake.cfg, "audit").filter(F.col("run_id") == run_id).collect()


def test_match_without_purpose_is_refused_and_audited(spark: SparkSession, pipeline_lake: PipelineLake) -> None:
    cfg = pipeline_lake.cfg.with_overrides(["audit.purpose="])
    with pytest.raises(RefusedError, match=r"audit\.purpose"):
        match.run(spark, cfg, run_id="t-refused")
    rows = _audit_rows(spark, pipeline_lake, "t-refused")
    assert len(rows) == 1 and rows[0]["outcome"] == "refused"
    cfg = pipeline_lake.cfg.with_overrides(["audit.purpose=curiosity"])
    with pytest.raises(RefusedError, match="not one of"):
        match.run(spark, cfg, run_id="t-refused-2")
    # Allowed in the project, but not matching's own purpose: an erasure request authorises no search.
    cfg = pipeline_lake.cfg.with_overrides(["audit.purpose=erasure_request"])
    with pytest.raises(RefusedError, match=r"audit\.job_purposes\.match"):
        match.run(spark, cfg, run_id="t-refused-3")
    rows = _audit_rows(spark, pipeline_lake, "t-refused-3")
    assert len(rows) == 1 and rows[0]["outcome"] == "refused" and rows[0]["purpose"] == "erasure_request"


def test_candidates_against_ground_truth(spark: SparkSession, pipeline_lake: PipelineLake) -> None:
    cfg, truth = pipeline_lake.cfg, pipeline_lake.truth
    res = pipeline_lake.results["match"]
    rows = read_table(spark, cfg, "matches").filter(F.col("run_id") == "t-match").collect()
    assert rows and all(r["band"] in ("strong", "possible") for r in rows)
    assert all(r["score"] >= r["threshold_score"] for r in rows)
    assert all(0 <= r["est_fpir"] <= 1 for r in rows)
    rank1 = {r["probe_record_id"]: r for r in rows if r["rank"] == 1}
    mated = [rid for rid, t in truth.items() if t["kind"] == "mated_probe"]
    unmated = [rid for rid, t in truth.items() if t["kind"] == "unmated_probe"]
    hits = [rid for rid in mated if rid in rank1
            and truth[rank1[rid]["candidate_record_id"]]["identity"] == truth[rid]["identity"]]
    assert len(hits) >= 0.6 * len(mated), (len(hits), len(mated))
    assert not [rid for rid in unmated if rid in rank1 and rank1[rid]["band"] == "strong"]
    status = read_table(spark, cfg, "probe_status").filter(F.col("run_id") == "t-match").collect()
    assert len(status) == res.probes == len(mated) + len(unmated)  # type: ignore[attr-defined]


def test_rerun_replaces_the_run_and_appends_one_audit_row(spark: SparkSession, pipeline_lake: PipelineLake) -> None:
    cfg = pipeline_lake.cfg.with_overrides(["audit.purpose=application_screening"])
    before = read_table(spark, cfg, "matches").filter(F.col("run_id") == "t-match").orderBy("probe_photo_id", "rank")
    expected = [tuple(r) for r in before.drop("est_fpir").collect()]
    n_audit = len(_audit_rows(spark, pipeline_lake, "t-match"))
    match.run(spark, cfg, run_id="t-match")
    after = read_table(spark, cfg, "matches").filter(F.col("run_id") == "t-match").orderBy("probe_photo_id", "rank")
    assert [tuple(r) for r in after.drop("est_fpir").collect()] == expected
    assert len(_audit_rows(spark, pipeline_lake, "t-match")) == n_audit + 1
