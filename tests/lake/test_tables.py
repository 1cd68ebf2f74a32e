"""Delta table helpers: the latest version as the Delta log has it (and the history fallback), pinned inserts."""

from __future__ import annotations

import datetime as dt

import pytest
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from facelink.config import Config
from facelink.lake import tables
from schemas import get_spec


def _history_version(spark: SparkSession, cfg: Config, name: str) -> int:
    row = DeltaTable.forPath(spark, cfg.table_path(name)).history(1).select("version").first()
    assert row is not None
    return int(row["version"])


def _append_one(spark: SparkSession, cfg: Config, run_id: str) -> None:
    spec = get_spec("runs")
    now = dt.datetime.now(dt.UTC)
    row = (run_id, "test", "test", now, now, "succeeded", None, {}, "h", {}, {})
    tables.append(spark, cfg, spec, spark.createDataFrame([row], spec.schema))


@pytest.mark.parametrize("jvm_log", [True, False], ids=["delta-log", "history-fallback"])
def test_table_version_creates_the_table_and_follows_each_commit(
    spark: SparkSession, cfg: Config, monkeypatch: pytest.MonkeyPatch, jvm_log: bool
) -> None:
    if not jvm_log:
        monkeypatch.setattr(tables, "_log_version", lambda spark, path: None)
    assert not tables.table_exists(spark, cfg, "runs")
    assert tables.table_version(spark, cfg, "runs") == 0  # created empty
    assert tables.table_exists(spark, cfg, "runs")
    for i in range(3):
        _append_one(spark, cfg, f"r{i}")
        assert tables.table_version(spark, cfg, "runs") == _history_version(spark, cfg, "runs") == i + 1


def test_log_version_of_a_missing_table_is_minus_one(spark: SparkSession, cfg: Config) -> None:
    assert tables._log_version(spark, cfg.table_path("nowhere")) == -1


def test_pinned_insert_counts_what_its_merge_inserted(spark: SparkSession, cfg: Config) -> None:
    """extract's path: one MERGE of materialised rows; rows already there are neither doubled nor counted."""
    spec = get_spec("rejects")
    now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)

    def rows(ids: list[str]) -> DataFrame:
        data = [(i, "ingest", "gallery", f"R{i}", None, None, "missing_file", None, "t-run", now) for i in ids]
        return spark.createDataFrame(data, spec.schema).localCheckpoint(eager=True)

    assert tables.insert_new(spark, cfg, spec, rows(["a", "b"]), pinned=True) == 2
    # "b" arrived meanwhile (a concurrent writer): only "c" is new.
    assert tables.insert_new(spark, cfg, spec, rows(["b", "c"]), pinned=True) == 1
    table = spark.read.format("delta").load(cfg.table_path("rejects"))
    assert sorted(r.reject_id for r in table.collect()) == ["a", "b", "c"]
