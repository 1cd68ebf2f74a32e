"""Data-quality gates on real Delta tables: clean data passes, planted faults fail naming the expectation."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from facelink.config import Config, load_config
from facelink.dq import gate as dq
from facelink.errors import DataQualityError
from facelink.lake.tables import append
from facelink.registry import recogniser, recogniser_id
from jobs import quality
from schemas import get_spec

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
INGEST_RUN = "ingest-20240501T000000-aaaa0001"
EXTRACT_RUN = "extract-20240501T010000-aaaa0002"
MATCH_RUN = "match-20240501T020000-aaaa0003"
DEDUP_RUN = "dedup-20240501T030000-aaaa0004"


def frame(spark: SparkSession, table: str, rows: list[dict[str, Any]], nullable: bool = False) -> DataFrame:
    """``rows`` (dicts; absent columns null) in ``table``'s schema, optionally with every column nullable."""
    schema = get_spec(table).schema
    if nullable:
        schema = T.StructType([T.StructField(f.name, f.dataType, True) for f in schema.fields])
    return spark.createDataFrame([tuple(r.get(n) for n in schema.fieldNames()) for r in rows], schema)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def unit_vector(seed: int, dim: int = 128) -> list[float]:
    v = np.random.default_rng(seed).normal(size=dim)
    return [float(x) for x in v / np.linalg.norm(v)]


def run_row(run_id: str, job: str, counts: dict[str, int], started: dt.datetime = NOW) -> dict[str, Any]:
    return {"run_id": run_id, "job": job, "env": "test", "started_at": started, "ended_at": started,
            "status": "succeeded", "counts": counts, "config_hash": "0" * 64, "tables_read": {},
            "tables_written": {}}


def photo_row(record_id: str, run_id: str = INGEST_RUN, **extra: Any) -> dict[str, Any]:
    return {"record_id": record_id, "photo_id": sha(record_id), "role": "gallery", "partition": "b000",
            "source_path": f"file:/archive/{record_id}.jpg", "content": b"\xff\xd8", "byte_length": 2000,
            "format": "JPEG", "width": 250, "height": 250, "metadata": {}, "ingest_run_id": run_id,
            "ingested_at": NOW, **extra}


def face_row(cfg: Config, record_id: str, **extra: Any) -> dict[str, Any]:
    return {"record_id": record_id, "photo_id": sha(record_id), "role": "gallery", "partition": "b000",
            "model_id": recogniser_id(cfg), "face_index": 0, "status": "ok", "n_faces": 1, "is_primary": True,
            "det_score": 0.95, "quality_ok": True, "embedding": unit_vector(ord(record_id[-1]), recogniser(cfg).dim),
            "extract_run_id": EXTRACT_RUN, "extracted_at": NOW, **extra}


def no_face_row(cfg: Config, record_id: str) -> dict[str, Any]:
    return face_row(cfg, record_id, face_index=-1, status="no_face", n_faces=0, is_primary=False,
                    det_score=None, quality_ok=False, embedding=None)


def match_row(rank: int, score: float, band: str, **extra: Any) -> dict[str, Any]:
    return {"run_id": MATCH_RUN, "probe_record_id": "P1", "probe_photo_id": sha("P1"), "probe_face_index": 0,
            "candidate_record_id": f"G{rank}", "candidate_photo_id": sha(f"G{rank}"),
            "candidate_face_index": 0, "rank": rank, "score": score, "est_fpir": 0.001 * rank, "band": band,
            "model_id": "m@1", "index_version": "v1", "gallery_size": 6, "threshold_score": 0.4, **extra}


def put(spark: SparkSession, cfg: Config, table: str, rows: list[dict[str, Any]]) -> None:
    append(spark, cfg, get_spec(table), frame(spark, table, rows))


def write_clean_lake(spark: SparkSession, cfg: Config) -> None:
    """A small consistent lake: 6 gallery photos, 1 reject in 7 rows, faces, one match and one dedup run."""
    gallery = [f"G{i}" for i in range(1, 7)]
    put(spark, cfg, "runs", [
        run_row(INGEST_RUN, "ingest", {"input_rows": 7, "new_photos": 6, "rejects": 1}),
        run_row(MATCH_RUN, "match", {"probes": 2}),
    ])
    put(spark, cfg, "photos", [photo_row(r) for r in gallery])
    put(spark, cfg, "rejects", [{
        "reject_id": sha("bad"), "job": "ingest", "role": "gallery", "record_id": "G9",
        "source_path": "file:/x", "reason": "corrupt_image", "run_id": INGEST_RUN, "rejected_at": NOW}])
    put(spark, cfg, "faces", [face_row(cfg, r) for r in gallery[:5]] + [no_face_row(cfg, gallery[5])])
    put(spark, cfg, "matches", [match_row(1, 0.71, "strong"), match_row(2, 0.52, "possible")])
    put(spark, cfg, "probe_status", [
        {"run_id": MATCH_RUN, "probe_record_id": "P1", "probe_photo_id": sha("P1"), "status": "searched",
         "n_candidates": 2, "top_score": 0.71, "top_band": "strong"},
        {"run_id": MATCH_RUN, "probe_record_id": "P2", "probe_photo_id": sha("P2"), "status": "no_face",
         "reason": "no face found", "n_candidates": 0},
    ])
    a, b = sorted([("G1", sha("G1")), ("G2", sha("G2"))])
    put(spark, cfg, "duplicate_candidates", [{
        "run_id": DEDUP_RUN, "pair_id": sha("G1|G2"), "record_id_a": a[0], "photo_id_a": a[1],
        "record_id_b": b[0], "photo_id_b": b[1], "score": 0.66, "est_fmr": 1e-6, "est_fpir": 0.002,
        "band": "strong", "model_id": "m@1", "index_version": "v1"}])


@pytest.fixture(scope="module")
def clean_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clean lake, written once per module; tests copy it (a Delta table folder copies as a whole)."""
    root = tmp_path_factory.mktemp("clean_lake")
    write_clean_lake(spark, load_config("test", [f"lake.root={root}"]))
    return root


@pytest.fixture()
def lake_cfg(cfg: Config, clean_lake: Path) -> Config:
    """The test's configuration, its lake a fresh copy of the clean lake."""
    shutil.copytree(clean_lake, cfg.lake_root)
    return cfg


def dq_rows(spark: SparkSession, cfg: Config, run_id: str) -> list[Any]:
    results = spark.read.format("delta").load(cfg.table_path("dq_results"))
    return results.filter(f"run_id = '{run_id}'").collect()


def test_clean_lake_passes_every_suite_and_records_results_and_docs(
    spark: SparkSession, lake_cfg: Config
) -> None:
    cfg = lake_cfg
    report = quality.run(spark, cfg, list(quality.CHECKED_TABLES), run_id="quality-clean")
    assert report.passed and report.critical_failures == []
    assert report.warnings == [], [o.line() for o in report.warnings]
    assert {o.table for o in report.outcomes} == set(quality.CHECKED_TABLES)
    rows = dq_rows(spark, cfg, "quality-clean")
    assert len(rows) == len(report.outcomes) > 40
    assert all(r.success for r in rows)
    assert {r.severity for r in rows} == {"critical", "warning"}
    versions = {r.table_name: r.table_version for r in rows}
    assert versions["photos"] == 1 and versions["faces"] == 1
    rates = {r.expectation: r.observed for r in rows if r.suite == "rejects_rate"}
    assert list(rates.values()) == [f"passed; reject_rate = 0.1429 ({INGEST_RUN})"]

    assert report.docs_index is not None and Path(report.docs_index).is_file()
    pages = list((Path(cfg.lake_root) / "dq_docs" / "validations").rglob("*.html"))
    assert {p.relative_to(Path(cfg.lake_root) / "dq_docs" / "validations").parts[0] for p in pages} >= {
        "photos", "faces", "faces_rates", "matches_coverage"}
    assert "quality-clean" in Path(report.docs_index).read_text()

    # a rerun of the same gate run replaces its dq_results rows instead of adding to them
    again = quality.run(spark, cfg, ["probe_status"], run_id="quality-clean")
    assert len(dq_rows(spark, cfg, "quality-clean")) == len(again.outcomes)
    runs = spark.read.format("delta").load(cfg.table_path("runs")).filter("job = 'quality'").collect()
    assert [r.status for r in runs] == ["succeeded", "succeeded"]


def test_planted_faults_fail_the_gate_naming_expectation_and_observed_values(
    spark: SparkSession, lake_cfg: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = lake_cfg
    dim = recogniser(cfg).dim
    short = face_row(cfg, "B1", embedding=unit_vector(1, dim - 1))
    long_ = face_row(cfg, "B2", embedding=[1.5] + [0.0] * (dim - 1))  # norm exactly 1.5 at any width
    put(spark, cfg, "faces", [short, long_])
    # a second ingest run, the latest: 4 rows in, 2 rejects (rate 0.5 > dq.max_reject_rate 0.2)
    later = "ingest-20240502T000000-bbbb0001"
    put(spark, cfg, "runs", [
        run_row(later, "ingest", {"input_rows": 4, "rejects": 2}, NOW + dt.timedelta(days=1))])
    put(spark, cfg, "rejects", [
        {"reject_id": sha(f"r{i}"), "job": "ingest", "role": "gallery", "source_path": f"file:/{i}",
         "reason": "missing_record_id", "run_id": later, "rejected_at": NOW} for i in range(2)])

    with pytest.raises(DataQualityError) as err:
        quality.run(spark, cfg, ["faces", "rejects"], run_id="quality-bad")
    message = str(err.value)
    assert "faces/faces: expect_column_pair_values_to_be_equal(embedding_len, expected_dim" in message
    assert f"({dim - 1}, {dim})" in message
    norm = "faces/faces: expect_column_values_to_be_between(embedding_norm, max_value=1.001, min_value=0.999)"
    assert norm in message
    assert "1 of 7 rows unexpected, e.g. [1.5" in message
    assert "rejects/rejects_rate: expect_column_values_to_be_between(reject_rate, max_value=0.2" in message
    assert "e.g. [0.5]; reject_rate = 0.5 (ingest-20240502T000000-bbbb0001)" in message
    rows = dq_rows(spark, cfg, "quality-bad")
    failed = {(r.suite, r.expectation.split("(")[1].split(",")[0]) for r in rows if not r.success}
    assert failed == {
        ("faces", "embedding_len"), ("faces", "embedding_norm"), ("rejects_rate", "reject_rate")}
    run = spark.read.format("delta").load(cfg.table_path("runs")).filter("run_id = 'quality-bad'").first()
    assert run is not None and run.status == "failed" and "reject_rate" in run.error

    # the command line reports the same through run_job: exit code 7 and the reason on stderr
    code = quality.main(["--env", "test", "--set", f"lake.root={cfg.lake_root}", "--tables", "rejects",
                         "--set", "dq.data_docs=false"])
    assert code == DataQualityError.exit_code
    assert "reject_rate" in capsys.readouterr().err


def test_null_ids_and_duplicate_keys_in_a_frame_fail_critical(spark: SparkSession, cfg: Config) -> None:
    rows = [photo_row("A1"), photo_row("A1"), {**photo_row("A2"), "record_id": None},
            photo_row("A3", role="archive")]
    photos = frame(spark, "photos", rows, nullable=True)
    outcomes = dq.validate(spark, cfg.with_overrides(["dq.data_docs=false"]), ["photos"], "quality-frames",
                           frames={"photos": photos})
    failed = {o.expectation: o for o in outcomes if not o.success}
    assert set(failed) == {
        "expect_column_values_to_not_be_null(record_id)",
        "expect_compound_columns_to_be_unique(record_id, photo_id)",
        "expect_column_values_to_be_in_set(role, value_set={gallery, probe})",
    }
    null_ids = failed["expect_column_values_to_not_be_null(record_id)"]
    assert null_ids.observed == "1 of 4 rows unexpected, e.g. [None]"
    assert all(o.table_version is None for o in outcomes)
    report = dq.QualityReport("quality-frames", None, tuple(outcomes))
    named = r"photos/photos: expect_column_values_to_not_be_null\(record_id\) \[record_id is never null\]"
    with pytest.raises(DataQualityError, match=named):
        report.raise_for_critical()


def test_scope_run_id_checks_one_run_and_warnings_only_log(
    spark: SparkSession, lake_cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = lake_cfg
    other = "ingest-20240502T000000-cccc0001"
    put(spark, cfg, "photos", [photo_row("S2", run_id=other, width=0)])
    clean = quality.run(spark, cfg, ["photos"], scope_run_id=INGEST_RUN)
    assert clean.passed and clean.warnings == []
    with caplog.at_level(logging.WARNING, logger="jobs.quality"):
        warned = quality.run(spark, cfg, ["photos"], scope_run_id=other)
    assert warned.passed
    width = "expect_column_values_to_be_between(width, min_value=1)"
    assert [o.expectation for o in warned.warnings] == [width]
    assert f"photos/photos: {width}" in caplog.text
    with pytest.raises(ValueError, match="tables"):
        quality.run(spark, cfg, ["runs"])
