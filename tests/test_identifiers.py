"""Identifiers that reach a path or a predicate: one allow-list each, checked at the command line and in the
library (``facelink.identifiers``), with the exploits of issue 19 replayed on real Delta tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from facelink import identifiers
from facelink.config import Config
from facelink.lake.runs import RunRecorder
from facelink.lake.tables import append, read_table, replace_where
from facelink.report.publish import report_dir
from jobs import evaluate, match
from schemas import get_spec
from tests.paths import DATA_DIR

INJECTION = "x\\' OR 1=1 --"
TRAVERSAL = "../../tables"


@pytest.mark.parametrize("value", ["match-2026-11-22", "dedup-20240501T000000-aaaa0001", "t-ingest-g", "eval.1"])
def test_run_ids_of_the_pipeline_are_valid(value: str) -> None:
    assert identifiers.run_id(value) == value


@pytest.mark.parametrize("value", [INJECTION, "x' OR '1'='1", TRAVERSAL, "..", ".", "a/b", "a..b", "", " x",
                                   "x\n", "a*b", "-x", "x" * 129, "run id"])
def test_run_ids_that_could_leave_a_folder_or_a_literal_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="invalid run id"):
        identifiers.run_id(value)
    assert not identifiers.is_valid("run id", value)


def test_model_ids_and_partitions() -> None:
    model = "mobilefacenet_128d@363229ee1930+flip+d480"
    assert identifiers.path_part(model) == model.replace("@", "_")
    for bad in ("../x@1", "m@1/..", "m@1 x", "a..b"):
        with pytest.raises(ValueError, match="invalid model id"):
            identifiers.path_part(bad)
    assert identifiers.partition("_unassigned") == "_unassigned" and identifiers.partition("b003") == "b003"
    for bad in ("..", ".hidden", "a/b", ""):
        with pytest.raises(ValueError, match="invalid partition"):
            identifiers.partition(bad)
    assert identifiers.is_valid("photo id", "a" * 64) and not identifiers.is_valid("photo id", "A" * 64)


def _match_row(run_id: str, rank: int) -> tuple[object, ...]:
    return (run_id, "P1", "p" * 64, 0, "G1", "g" * 64, 0, rank, 0.5, 1e-3, "strong", True, True, 0.9, 0.9, "m@1",
            "v", 4, 0.4)


def test_replace_where_refuses_an_injected_run_id_and_keeps_every_other_row(spark: SparkSession,
                                                                            cfg: Config) -> None:
    spec = get_spec("matches")
    append(spark, cfg, spec, spark.createDataFrame([_match_row("match-1", 1), _match_row("match-1", 2)], spec.schema))
    evil = spark.createDataFrame([_match_row(INJECTION, 1)], spec.schema)
    with pytest.raises(ValueError, match="invalid run id"):
        replace_where(spark, cfg, spec, evil, "run_id", INJECTION)
    with pytest.raises(ValueError, match="not allowed"):
        replace_where(spark, cfg, spec, evil, "probe_record_id", "P1")
    assert sorted(r["rank"] for r in read_table(spark, cfg, "matches").collect()) == [1, 2]
    # A valid id still replaces exactly its own slice.
    replace_where(spark, cfg, spec, spark.createDataFrame([_match_row("match-2", 1)], spec.schema), "run_id", "match-2")
    assert read_table(spark, cfg, "matches").count() == 3


def test_the_command_line_refuses_an_injected_run_id_before_any_work(spark: SparkSession, cfg: Config,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--env", "test", "--set", f"lake.root={cfg.lake_root}", "--run-id", INJECTION]
    with pytest.raises(SystemExit) as exit_info:
        match.main(argv, spark=spark)
    assert exit_info.value.code == 2
    assert "invalid run id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        match.main(["--env", "test", "--probe-run-id", "a' OR 1=1", "--set", f"lake.root={cfg.lake_root}"],
                   spark=spark)
    assert not Path(cfg.table_path("runs")).exists(), "nothing may run (nor be recorded) for a refused argument"


def test_evaluation_cannot_remove_a_folder_outside_its_report(spark: SparkSession, cfg: Config) -> None:
    spec = get_spec("matches")
    append(spark, cfg, spec, spark.createDataFrame([_match_row("match-1", 1)], spec.schema))
    tables = Path(cfg.lake_root) / "tables"
    (Path(cfg.lake_root) / "reports" / "evaluation").mkdir(parents=True)
    with pytest.raises(ValueError, match="invalid run id"):
        evaluate.run(spark, cfg, str(DATA_DIR / "yale_a" / "manifest.csv"), run_id=TRAVERSAL)
    assert (tables / "matches" / "_delta_log").is_dir(), "the run id reached the lake's tables"
    with pytest.raises(ValueError):
        report_dir(cfg.lake_root, TRAVERSAL)
    with pytest.raises(ValueError):
        RunRecorder(spark, cfg, "evaluate", TRAVERSAL, started_at=dt.datetime.now(dt.UTC))


def test_accountable_jobs_check_operator_and_authority_against_configuration(cfg: Config) -> None:
    from facelink.errors import RefusedError
    from facelink.lake.runs import require_accountability

    good = ["audit.operator=night shift", "audit.purpose=application_screening", "audit.authority=Art. 6(1)(e)"]
    assert require_accountability(cfg.with_overrides(good), "match").operator == "night shift"
    for bad in ("audit.operator='jdoe\n--set lake.root=/'", "audit.authority=../../x", "audit.operator=' x'"):
        with pytest.raises(RefusedError, match="does not fit"):
            require_accountability(cfg.with_overrides([*good, bad]), "match")
    listed = cfg.with_overrides([*good, "audit.operators=[alice]"])
    with pytest.raises(RefusedError, match=r"audit\.operators"):
        require_accountability(listed, "match")
    assert require_accountability(listed.with_overrides(["audit.operator=alice"]), "match").operator == "alice"
