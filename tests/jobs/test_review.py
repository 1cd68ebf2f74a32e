"""Human review on real Delta tables: two different reviewers settle a subject, one reviewer twice does not."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from facelink.config import Config, current_identity, load_config
from facelink.errors import RefusedError
from facelink.lake.tables import append, read_table
from jobs import review
from schemas import get_spec

T0 = dt.datetime(2024, 5, 1, 9, 0, tzinfo=dt.UTC)
DEDUP_OLD, DEDUP_NEW = "dedup-20240501T000000-aaaa0001", "dedup-20240502T000000-aaaa0002"
MATCH_RUN = "match-20240502T010000-aaaa0003"
CANDIDATE_TABLES = ("duplicate_candidates", "duplicate_clusters", "matches")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pair_id(n: int) -> str:
    return sha(f"pair{n}")


def put(spark: SparkSession, cfg: Config, table: str, rows: list[dict[str, Any]]) -> None:
    schema = get_spec(table).schema
    frame = spark.createDataFrame([tuple(r.get(n) for n in schema.fieldNames()) for r in rows], schema)
    append(spark, cfg, get_spec(table), frame)


def pair_row(n: int, run_id: str = DEDUP_NEW, score: float = 0.6) -> dict[str, Any]:
    return {"run_id": run_id, "pair_id": pair_id(n), "record_id_a": f"A{n}", "photo_id_a": sha(f"a{n}"),
            "record_id_b": f"B{n}", "photo_id_b": sha(f"b{n}"), "score": score, "est_fmr": 1e-6,
            "est_fpir": 0.002, "band": "strong", "model_id": "m@1", "index_version": "v1"}


def write_candidates(spark: SparkSession, cfg: Config) -> None:
    """Pairs 1-6 in the newest dedup run (pair 1 also in an older one), a cluster of three, one match."""
    put(spark, cfg, "duplicate_candidates",
        [pair_row(1, DEDUP_OLD)] + [pair_row(n, score=0.5 + n / 100) for n in range(1, 7)])
    put(spark, cfg, "duplicate_clusters", [
        {"run_id": DEDUP_NEW, "cluster_id": "C1", "cluster_size": 3, "record_id": r,
         "strongest_link_record_id": "C1", "strongest_link_score": 0.7, "strongest_link_band": "strong"}
        for r in ("C1", "C3", "C2")])
    put(spark, cfg, "matches", [{
        "run_id": MATCH_RUN, "probe_record_id": "P1", "probe_photo_id": sha("p1"), "probe_face_index": 0,
        "candidate_record_id": "G7", "candidate_photo_id": sha("g7"), "candidate_face_index": 0, "rank": 1,
        "score": 0.66, "est_fpir": 0.001, "band": "strong", "model_id": "m@1", "index_version": "v1",
        "gallery_size": 100, "threshold_score": 0.4}])


@pytest.fixture(scope="module")
def candidates_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("review_lake")
    write_candidates(spark, load_config("test", [f"lake.root={root}"]))
    return root


@pytest.fixture()
def lake_cfg(cfg: Config, candidates_lake: Path) -> Config:
    shutil.copytree(candidates_lake, cfg.lake_root)
    return cfg


def versions(spark: SparkSession, cfg: Config) -> dict[str, int]:
    return {t: DeltaTable.forPath(spark, cfg.table_path(t)).history(1).first()["version"]  # type: ignore[index]
            for t in CANDIDATE_TABLES}


def status_of(spark: SparkSession, cfg: Config) -> dict[tuple[str, str], Any]:
    return {(r.subject_type, r.subject_id): r for r in review.review_status(spark, cfg).collect()}


def decision(n: int, reviewer: str, what: str, minutes: int, subject: str = "pair") -> dict[str, Any]:
    sid = pair_id(n) if subject == "pair" else str(n)
    return {"review_id": f"r-{n}-{reviewer}-{minutes}", "subject_type": subject, "subject_id": sid,
            "source_run_id": DEDUP_NEW, "record_ids": [f"A{n}", f"B{n}"], "reviewer": reviewer, "decision": what,
            "reviewed_at": T0 + dt.timedelta(minutes=minutes)}


def test_status_needs_two_different_reviewers_to_agree(spark: SparkSession, lake_cfg: Config) -> None:
    cfg = lake_cfg
    put(spark, cfg, "reviews", [
        decision(1, "alice", "same_person", 1), decision(1, "bob", "same_person", 2),          # confirmed
        decision(2, "carol", "same_person", 3), decision(2, "carol", "same_person", 4),        # one reviewer twice
        decision(3, "alice", "same_person", 5), decision(3, "bob", "different_people", 6),     # disagreement
        decision(4, "alice", "different_people", 7), decision(4, "dan", "different_people", 8),
        decision(5, "alice", "same_person", 9), decision(5, "alice", "different_people", 10),  # changed her mind
        decision(5, "bob", "same_person", 11),
        decision(6, "alice", "inconclusive", 12), decision(6, "bob", "inconclusive", 13),
        decision(9, "erin", "same_person", 14),                                                # subject since purged
    ])
    status = status_of(spark, cfg)
    pair = {n: status[("pair", pair_id(n))] for n in (1, 2, 3, 4, 5, 6, 9)}
    assert {n: r.status for n, r in pair.items()} == {
        1: "confirmed_same", 2: "open", 3: "disputed", 4: "confirmed_different", 5: "disputed",
        6: "inconclusive", 9: "open"}
    assert (pair[2].n_reviews, pair[2].n_reviewers, pair[2].reviewers) == (2, 1, ["carol"])
    assert pair[5].decisions == {"alice": "different_people", "bob": "same_person"}
    assert pair[1].source_run_id == DEDUP_NEW and pair[1].record_ids == ["A1", "B1"]
    assert pair[9].record_ids == ["A9", "B9"] and pair[9].score is None
    cluster = status[("cluster", "C1")]
    assert (cluster.status, cluster.n_reviews, cluster.record_ids) == ("open", 0, ["C1", "C2", "C3"])
    assert status[("match", f"{MATCH_RUN}/{sha('p1')}/1")].record_ids == ["P1", "G7"]

    queue = review.open_queue(spark, cfg).collect()
    assert [(r.status, r.subject_id) for r in queue][:2] == [("disputed", pair_id(5)), ("disputed", pair_id(3))]
    assert {r.status for r in queue} == {"open", "disputed"}
    assert {r.subject_id for r in queue} >= {pair_id(2), pair_id(9), "C1"}
    assert not {r.subject_id for r in queue} & {pair_id(1), pair_id(4), pair_id(6)}
    # the documented SQL runs as written once the views are registered, and the docstring shows it verbatim
    assert len(spark.sql(review.OPEN_QUEUE_SQL).collect()) == len(queue)
    assert " ".join(review.OPEN_QUEUE_SQL.split()) in " ".join((review.__doc__ or "").split())


def test_record_review_fills_subject_and_refuses_unknown_subjects(spark: SparkSession, lake_cfg: Config) -> None:
    cfg = lake_cfg
    before = versions(spark, cfg)
    first = review.record_review(spark, cfg, " Alice ", "pair", pair_id(1), "same_person", note="same scar",
                                 run_id="review-t-1")
    assert (first.reviewer, first.subject.source_run_id, first.subject.record_ids) == ("alice", DEDUP_NEW,
                                                                                        ("A1", "B1"))
    review.record_review(spark, cfg, "ALICE", "pair", pair_id(1), "same_person", run_id="review-t-2")
    assert status_of(spark, cfg)[("pair", pair_id(1))].status == "open", "one reviewer twice confirms nothing"
    review.record_review(spark, cfg, "bob", "pair", pair_id(1), "same_person", source_run_id=DEDUP_OLD,
                         run_id="review-t-3")
    # a retried command with the same run id records nothing new
    review.record_review(spark, cfg, "bob", "pair", pair_id(1), "same_person", run_id="review-t-3")
    row = status_of(spark, cfg)[("pair", pair_id(1))]
    assert (row.status, row.n_reviews, row.reviewers) == ("confirmed_same", 3, ["alice", "bob"])

    match = review.record_review(spark, cfg, "carol", "match", f"{MATCH_RUN}/{sha('p1')}/1", "different_people")
    assert (match.subject.source_run_id, match.subject.record_ids) == (MATCH_RUN, ("P1", "G7"))

    with pytest.raises(review.UnknownSubjectError, match="unknown pair 'nope': not in duplicate_candidates"):
        review.record_review(spark, cfg, "alice", "pair", "nope", "same_person")
    with pytest.raises(review.UnknownSubjectError, match="unknown cluster 'C1': not in duplicate_clusters in run"):
        review.record_review(spark, cfg, "alice", "cluster", "C1", "same_person", source_run_id=DEDUP_OLD)
    with pytest.raises(review.UnknownSubjectError, match="expected <run_id>/<probe_photo_id>/<rank>"):
        review.record_review(spark, cfg, "alice", "match", "just-an-id", "same_person")
    with pytest.raises(ValueError, match="decision"):
        review.record_review(spark, cfg, "alice", "pair", pair_id(1), "maybe")

    reviews = spark.read.format("delta").load(cfg.table_path("reviews"))
    assert reviews.count() == 4
    stored = reviews.filter("review_id = 'review-t-1'").first()
    assert stored is not None and (stored.note, stored.record_ids) == ("same scar", ["A1", "B1"])
    assert versions(spark, cfg) == before, "candidate tables are never edited"


def test_command_line_records_and_prints_the_queue(
    spark: SparkSession, lake_cfg: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = ["--set", f"lake.root={lake_cfg.lake_root}", "--env", "test"]
    code = review.main(["record", "--subject-type", "pair", "--subject-id", pair_id(2),
                        "--decision", "same_person", "--note", "looks alike", *lake])
    assert code == 0
    me = current_identity(False).name
    assert f"{me} -> same_person on pair {pair_id(2)} (run {DEDUP_NEW}, records A2, B2)" in capsys.readouterr().out

    code = review.main([*lake, "record", "--subject-type", "cluster", "--subject-id", "C9",
                        "--decision", "same_person"])
    assert code == review.UnknownSubjectError.exit_code
    assert "unknown cluster 'C9'" in capsys.readouterr().err

    assert review.main(["queue", "--subject-type", "pair", "--limit", "3", *lake]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["status", "type", "band", "score", "n"]
    assert len(out) == 1 + 3 + 1 and out[-1].startswith("3 subject(s) shown")
    assert out[1].split()[:2] == ["open", "pair"] and pair_id(6) in out[1], "highest score first"


def _pair_status(spark: SparkSession, cfg: Config, n: int) -> Any:
    return status_of(spark, cfg)[("pair", pair_id(n))]


def test_one_person_cannot_confirm_alone_whatever_name_they_type(
    spark: SparkSession, lake_cfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reviewer is the account the job runs as: a typed name is no option, an untrusted passed identity
    is ignored, and the same account twice confirms nothing."""
    lake = ["--set", f"lake.root={lake_cfg.lake_root}", "--env", "test"]
    me = current_identity(False)
    args = ["record", "--subject-type", "pair", "--subject-id", pair_id(3), "--decision", "different_people"]
    with pytest.raises(SystemExit):
        review.main([*args, "--reviewer", "alice", *lake])
    assert review.main([*args, *lake, "--run-id", "review-cli-1"]) == 0
    monkeypatch.setenv("FACELINK_IDENTITY", "bob")  # not trusted by this configuration
    assert review.main([*args, *lake, "--run-id", "review-cli-2"]) == 0
    status = _pair_status(spark, lake_cfg, 3)
    assert (status.status, status.reviewers, status.n_reviews) == ("open", [me.name], 2)
    # Where the orchestrator is trusted, its identity is the reviewer and the account is recorded with it.
    trusted = [*lake, "--set", "review.trust_orchestrator_identity=true", "--run-id", "review-cli-3"]
    assert review.main([*args, *trusted]) == 0
    status = _pair_status(spark, lake_cfg, 3)
    assert (status.status, status.reviewers) == ("confirmed_different", sorted(["bob", me.name]))
    audit = read_table(spark, lake_cfg, "audit").filter("run_id = 'review-cli-3'").first()
    assert audit is not None
    detail = json.loads(audit["detail"])
    assert (detail["reviewer"], detail["os_user"], detail["identity_source"]) == ("bob", me.os_user, "orchestrator")
    capsys.readouterr()


def test_the_operator_of_a_run_cannot_review_its_candidates(spark: SparkSession, lake_cfg: Config) -> None:
    spec = get_spec("audit")
    row = (f"{DEDUP_NEW}/x", DEDUP_NEW, "dedup", "Carol", "duplicate_enrolment_check", "CASE-1", {}, {}, "m@1",
           "v1", "h", {}, "{}", T0, T0, "succeeded")
    append(spark, lake_cfg, spec, spark.createDataFrame([row], spec.schema))
    with pytest.raises(RefusedError, match="carol operated run"):
        review.record_review(spark, lake_cfg, "carol", "pair", pair_id(4), "same_person", run_id="review-op-1")
    refused = read_table(spark, lake_cfg, "audit").filter("run_id = 'review-op-1'").first()
    assert refused is not None and refused["outcome"] == "refused"
    assert read_table(spark, lake_cfg, "reviews").count() == 0
    review.record_review(spark, lake_cfg, "dan", "pair", pair_id(4), "same_person", run_id="review-op-2")
    assert read_table(spark, lake_cfg, "reviews").count() == 1


def test_a_cluster_that_changes_membership_is_open_again(spark: SparkSession, lake_cfg: Config) -> None:
    cfg = lake_cfg
    review.record_review(spark, cfg, "alice", "cluster", "C1", "same_person", run_id="review-c-1")
    review.record_review(spark, cfg, "bob", "cluster", "C1", "same_person", run_id="review-c-2")
    assert status_of(spark, cfg)[("cluster", "C1")].status == "confirmed_same"
    later = "dedup-20240503T000000-aaaa0004"

    def cluster(members: tuple[str, ...]) -> list[dict[str, Any]]:
        return [{"run_id": later, "cluster_id": "C1", "cluster_size": len(members), "record_id": r,
                 "strongest_link_record_id": "C1", "strongest_link_score": 0.7, "strongest_link_band": "strong"}
                for r in members]

    put(spark, cfg, "duplicate_clusters", cluster(("C1", "C2", "C3", "C4")))  # a member joined
    grown = status_of(spark, cfg)[("cluster", "C1")]
    assert (grown.status, grown.n_reviewers, grown.record_ids) == ("open", 0, ["C1", "C2", "C3", "C4"])
    review.record_review(spark, cfg, "alice", "cluster", "C1", "same_person", run_id="review-c-3")
    review.record_review(spark, cfg, "erin", "cluster", "C1", "same_person", run_id="review-c-4")
    assert status_of(spark, cfg)[("cluster", "C1")].status == "confirmed_same"
