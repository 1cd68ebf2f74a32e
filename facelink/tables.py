"""Delta table helpers: create from a :class:`TableSpec`, read with versions, idempotent writes."""

from __future__ import annotations

import logging

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from schemas import TableSpec, assert_schema, get_spec

log = logging.getLogger(__name__)


def ensure_table(spark: SparkSession, cfg: Config, spec: TableSpec) -> DeltaTable:
    """Create the Delta table for ``spec`` under the lake if it does not exist; return it."""
    path = cfg.table_path(spec.name)
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(spec.schema).comment(spec.comment)
    if spec.partition_by:
        builder = builder.partitionedBy(*spec.partition_by)
    for key, value in spec.properties.items():
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
    """The table's latest Delta version (creating the table if needed)."""
    table = ensure_table(spark, cfg, get_spec(name))
    row = table.history(1).select("version").first()
    return int(row["version"]) if row else 0


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


def replace_where(spark: SparkSession, cfg: Config, spec: TableSpec, rows: DataFrame, column: str, value: str) -> None:
    """Replace exactly the rows with ``column = value`` by ``rows`` in one commit (idempotent per run)."""
    rows = spec.conform(rows)
    assert_schema(rows, spec)
    bad = rows.filter(F.col(column) != F.lit(value)).limit(1).count()
    if bad:
        raise ValueError(f"{spec.name}: rows outside {column}={value!r} in a replace of that slice")
    ensure_table(spark, cfg, spec)
    predicate = f"`{column}` = '{value.replace(chr(39), chr(39) * 2)}'"
    (
        rows.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", predicate)
        .save(cfg.table_path(spec.name))
    )
