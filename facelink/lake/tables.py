"""Delta table helpers: create from a :class:`TableSpec`, read with versions, idempotent writes, and the
deletes and VACUUM that erasure and retention make (by MERGE against keys, so no id enters the Delta log)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from delta.tables import DeltaTable
from py4j.protocol import Py4JError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from facelink import identifiers
from facelink.config import Config
from schemas import TableSpec, assert_schema, get_spec

log = logging.getLogger(__name__)


def ensure_table(spark: SparkSession, cfg: Config, spec: TableSpec) -> DeltaTable:
    """Create the Delta table for ``spec`` under the lake if it does not exist; return it."""
    path = cfg.table_path(spec.name)
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(spec.schema).comment(spec.comment)
    if spec.partition_by:
        builder = builder.partitionedBy(*spec.partition_by)
    for key, value in spec.table_properties().items():
        builder = builder.property(key, value)
    return builder.execute()


def table_exists(spark: SparkSession, cfg: Config, name: str) -> bool:
    return DeltaTable.isDeltaTable(spark, cfg.table_path(name))


def read_table(spark: SparkSession, cfg: Config, name: str, version: int | None = None) -> DataFrame:
    """Read a table by path (optionally at a version); creates it empty first if it does not exist."""
    ensure_table(spark, cfg, get_spec(name))
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(cfg.table_path(name))


def table_version(spark: SparkSession, cfg: Config, name: str) -> int:
    """The table's latest Delta version (creating the table if needed).

    Every job notes the versions it reads and writes (two or three calls). The version comes from the table's
    Delta log as the JVM's ``DeltaLog`` keeps it (a listing of ``_delta_log``, ~5 ms) rather than from
    ``DeltaTable.history(1)``, a Spark job that with the table check took ~0.2 s a call.
    """
    path = cfg.table_path(name)
    version = _log_version(spark, path)
    if version is not None and version >= 0:
        return version
    table = ensure_table(spark, cfg, get_spec(name))
    if version is not None:  # no table there a moment ago: ensure_table has just created it
        return max(0, _log_version(spark, path) or 0)
    row = table.history(1).select("version").first()
    return int(row["version"]) if row else 0


def _log_version(spark: SparkSession, path: str) -> int | None:
    """Latest version of the Delta log at ``path`` (-1: no table there), or None if the JVM API is missing.

    ``DeltaLog`` is Delta's internal API (delta-spark 4.x: ``forTable(SparkSession, String)``, then
    ``update(Boolean, Option, Option)``); a session or build without it falls back to the table history.
    """
    jvm: Any = getattr(spark, "_jvm", None)  # classic sessions have it, Spark Connect ones do not
    if jvm is None:
        return None
    try:
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
        none = jvm.scala.Option.empty()
        return int(delta_log.update(False, none, none).version())
    except (AttributeError, TypeError, Py4JError) as exc:
        log.debug("Delta log version of %s unavailable from the JVM (%s): using the table history", path, exc)
        return None


def insert_new(spark: SparkSession, cfg: Config, spec: TableSpec, rows: DataFrame, pinned: bool = False) -> int:
    """Insert the rows whose key is not yet in the table, in one Delta commit; return how many.

    Rows already present (same key) are left as they are, so reruns are idempotent. When nothing is new no
    commit is made at all, so a rerun leaves the table's version unchanged (unless ``pinned``).

    ``pinned`` says that ``rows`` is materialised (a local checkpoint), not empty, and made of keys that were
    absent at the table version the caller read (extract's pending photos). The MERGE alone then inserts
    the rows still absent, so a concurrent writer's rows are kept and nothing is inserted twice, and its own
    metrics give the count: no separate anti-join and count before it (one scan of the table's keys fewer).
    The caller makes sure such rows exist (a job with nothing pending does not call this), so only a race
    with a concurrent writer of the same keys can make this MERGE commit a version that inserts nothing.
    """
    rows = spec.conform(rows)
    assert_schema(rows, spec)
    target = ensure_table(spark, cfg, spec)
    cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.key)
    if pinned:
        metrics = target.alias("t").merge(rows.alias("s"), cond).whenNotMatchedInsertAll().execute().first()
        count = int(metrics["num_inserted_rows"]) if metrics is not None else 0
        log.info("%s: %d new rows", spec.name, count)
        return count
    existing = target.toDF().select(*spec.key)
    # Pinned with a local checkpoint, not cache(): Delta's MERGE re-plans its source and misses the cache, so
    # an expensive source (ingest's decoding) would run a second time (measured: extract's face pipeline ran
    # twice per photo with cache()).
    new_rows = rows.join(existing, on=list(spec.key), how="left_anti").localCheckpoint(eager=True)
    try:
        count = new_rows.count()
        if count:
            target.alias("t").merge(new_rows.alias("s"), cond).whenNotMatchedInsertAll().execute()
        log.info("%s: %d new rows", spec.name, count)
        return count
    finally:
        new_rows.unpersist()


def append(spark: SparkSession, cfg: Config, spec: TableSpec, rows: DataFrame) -> None:
    """Append rows (for append-only tables such as ``audit``)."""
    rows = spec.conform(rows)
    assert_schema(rows, spec)
    ensure_table(spark, cfg, spec)
    rows.write.format("delta").mode("append").save(cfg.table_path(spec.name))


#: The columns a ``replaceWhere`` may name, with the identifier kind their value must be.
REPLACE_COLUMNS = {"run_id": "run id"}


def replace_where(spark: SparkSession, cfg: Config, spec: TableSpec, rows: DataFrame, column: str, value: str) -> None:
    """Replace exactly the rows with ``column = value`` by ``rows`` in one commit (idempotent per run).

    Delta's ``replaceWhere`` takes SQL text, not a column expression, so ``value`` is checked against its
    identifier allow-list (:mod:`facelink.identifiers`) before it becomes a literal.

    Raises:
        ValueError: ``column`` is not one of :data:`REPLACE_COLUMNS`, ``value`` is not a valid identifier of
            its kind, or a row lies outside the slice.
    """
    if column not in REPLACE_COLUMNS:
        raise ValueError(f"{spec.name}: replaceWhere on {column!r} is not allowed (only {sorted(REPLACE_COLUMNS)})")
    identifiers.check(REPLACE_COLUMNS[column], value)
    rows = spec.conform(rows)
    assert_schema(rows, spec)
    bad = rows.filter(F.col(column) != F.lit(value)).limit(1).count()
    if bad:
        raise ValueError(f"{spec.name}: rows outside {column}={value!r} in a replace of that slice")
    ensure_table(spark, cfg, spec)
    predicate = f"`{column}` = '{value}'"  # the allow-list admits no quote, backslash or space
    (
        rows.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", predicate)
        .save(cfg.table_path(spec.name))
    )


#: Tables that hold personal data (photos, embeddings, record or photo ids): erased from and vacuumed.
PERSONAL_TABLES = (
    "reviews", "duplicate_clusters", "duplicate_candidates", "matches", "probe_status", "faces", "photos",
    "rejects", "dq_results",
)
#: Delta's default ``delta.deletedFileRetentionDuration``; VACUUM refuses a shorter retention unless told.
DELTA_SAFE_RETENTION_HOURS = 168
RETENTION_CHECK_KEY = "spark.databricks.delta.retentionDurationCheck.enabled"


def delete_matching(spark: SparkSession, cfg: Config, table: str, keys: DataFrame, condition: str) -> int:
    """Delete the rows of ``table`` that match a row of ``keys`` under ``condition``; return how many.

    ``condition`` names the table's row ``t`` and a key row ``s``. Nothing is committed when no row matches,
    so a repeated erasure leaves the table's version as it was. A missing table is left missing.
    """
    if not table_exists(spark, cfg, table):
        return 0
    target = DeltaTable.forPath(spark, cfg.table_path(table))
    matched = target.toDF().alias("t").join(keys.alias("s"), F.expr(condition), how="left_semi").count()
    if matched:
        target.alias("t").merge(keys.alias("s"), condition).whenMatchedDelete().execute()
    log.info("%s: %d rows deleted", table, matched)
    return matched


def delete_where(spark: SparkSession, cfg: Config, table: str, condition: Column) -> int:
    """Delete the rows of ``table`` where ``condition`` holds; return how many (no commit when none).

    Delta logs the predicate: use only for conditions that name no person (a role, a timestamp).
    """
    if not table_exists(spark, cfg, table):
        return 0
    target = DeltaTable.forPath(spark, cfg.table_path(table))
    matched = target.toDF().filter(condition).count()
    if matched:
        target.delete(condition)
    log.info("%s: %d rows deleted", table, matched)
    return matched


@contextmanager
def retention_check_relaxed(spark: SparkSession, hours: float) -> Iterator[None]:
    """Within the block, let VACUUM use ``hours`` below Delta's 168-hour safety interval; restore after.

    The setting is the session's: another thread using the same session meanwhile sees it too.
    """
    if hours >= DELTA_SAFE_RETENTION_HOURS:
        yield
        return
    previous = spark.conf.get(RETENTION_CHECK_KEY, None)
    spark.conf.set(RETENTION_CHECK_KEY, "false")
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(RETENTION_CHECK_KEY)
        else:
            spark.conf.set(RETENTION_CHECK_KEY, previous)


def vacuum_tables(spark: SparkSession, cfg: Config, tables: Sequence[str], hours: float) -> tuple[str, ...]:
    """``VACUUM`` each existing table of ``tables`` with a retention of ``hours``; return the tables vacuumed.

    Raises:
        ValueError: ``hours`` is negative.
    """
    if hours < 0:
        raise ValueError(f"retention.vacuum_hours must be >= 0, got {hours}")
    if "audit" in tables:
        raise ValueError("the audit table is append-only and is never vacuumed by erasure")
    done = []
    with retention_check_relaxed(spark, hours):
        for table in tables:
            if table_exists(spark, cfg, table):
                DeltaTable.forPath(spark, cfg.table_path(table)).vacuum(float(hours))
                done.append(table)
    log.info("vacuumed %s with a retention of %s hours", ", ".join(done) or "nothing", hours)
    return tuple(done)

