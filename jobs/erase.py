"""Erase records: every row that names them, every file that held them, and the index versions built on them.

An erasure request names record ids (``--record-id``, repeatable, or ``--from-file`` with one id a line; prefer
the file, since a command line shows in process lists and scheduler logs). The job deletes:

======================  ===============================================================================
photos, faces, rejects  the record's rows (``record_id``)
matches                 rows where the record is the probe or a candidate
probe_status            rows where the record is the probe
duplicate_candidates    pairs with the record on either side
duplicate_clusters      every cluster the record is a member of (the other members still name it as
                        cluster id or strongest link; the next dedup run rebuilds their clusters)
reviews                 decisions whose ``record_ids`` contain the record
dq_results              rows whose ``observed`` sample quotes the record or one of its photo ids have
                        ``observed`` redacted (the check's outcome is kept)
======================  ===============================================================================

Rows go by a Delta MERGE against a DataFrame of the ids (``WHEN MATCHED THEN DELETE``), one commit per table,
not by ``DELETE ... WHERE record_id IN (...)``: Delta writes a DELETE's predicate, literals included, into the
table's transaction log (``commitInfo.operationParameters``), which VACUUM never removes; a MERGE's log holds
only the join condition.

Then each recogniser's index is rebuilt incrementally (:func:`facelink.index.publish.build_and_publish`): the
partitions that lost a face are rebuilt from the faces that remain and published as the next version; a recogniser
whose gallery became empty is retired (its index files removed). Every file under ``<lake>/indexes`` that no version
in force references is deleted (earlier versions, leftovers of failed builds), so erase must not run while an index
build runs. Last, ``VACUUM`` with ``retention.vacuum_hours`` removes the data files that held the erased rows and were
dropped more than that many hours ago; the files dropped by this run go at the next VACUUM after that (the daily
``jobs.retention`` run vacuums the same tables), or at once with ``--set retention.vacuum_hours=0``.

A retention shorter than Delta's 168-hour safety interval is refused by Delta unless
``spark.databricks.delta.retentionDurationCheck.enabled`` is false. :func:`facelink.lake.tables.vacuum_tables`
switches it off on the session for the duration of its VACUUM calls only and then restores the previous value. The
check exists because a reader or writer still on a snapshot older than the retention can fail when its files vanish:
run a short-retention erase when no other job uses the tables, and do not share its SparkSession with other threads.

What else could quote the records goes too. Delta keeps no min/max statistics of identifying columns
(``TableSpec.identifying``, set as ``delta.dataSkippingStatsColumns`` when a table is created), so no commit
or checkpoint of the transaction log holds their ids, which VACUUM would never remove; ``runs.error`` texts
that quote them are redacted and ``runs`` is vacuumed with the rest; and every report folder, nightly
summary, Data Docs page, GX validation result and evaluation or calibration cache under a local lake that
holds one of their ids, photo id prefixes, file names or embeddings is removed (:mod:`facelink.lake.erasure`).
A table created before its columns were marked identifying keeps statistics in its older commits: set the
property on it (``ALTER TABLE delta.`<path>` SET TBLPROPERTIES``) and let Delta's log cleanup (commits older
than ``delta.logRetentionDuration``, at a checkpoint) remove those commits.

The audit table is append-only and never touched: the job appends its own ``erase`` row (operator, purpose
``erasure_request``, authority) with how many records and rows were erased, never the ids. No job writes a
data subject's id to ``runs`` or ``audit`` in the clear: the run recorder replaces the subjects a job names
(``RunRecorder.subjects``) by keyed pseudonyms (``audit.pseudonym_key``). Erasing records that
are already gone deletes nothing and succeeds.

Run: ``python -m jobs.erase --env local --from-file ids.txt --set audit.operator=... \
--set audit.purpose=erasure_request --set audit.authority=...``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from facelink.config import Config
from facelink.errors import InputError
from facelink.lake.erasure import Traces, sweep
from facelink.lake.fs import is_local, lake_fs, lake_uri
from facelink.lake.runs import RunRecorder, new_run_id, require_accountability
from facelink.lake.tables import (
    PERSONAL_TABLES,
    delete_matching,
    read_table,
    table_exists,
    vacuum_tables,
)
from facelink.registry import recogniser_id
from facelink.registry import recogniser_names as configured_recognisers
from schemas import get_spec

log = logging.getLogger(__name__)
JOB = "erase"

#: Per table, the MERGE condition matching a target row ``t`` to an erased record ``s.record_id``. Derived
#: tables come first and ``photos`` last, so a run that fails midway leaves the source for the rerun to find.
RECORD_CONDITIONS = {
    "reviews": "array_contains(t.record_ids, s.record_id)",
    "duplicate_candidates": "t.record_id_a = s.record_id OR t.record_id_b = s.record_id",
    "matches": "t.probe_record_id = s.record_id OR t.candidate_record_id = s.record_id",
    "probe_status": "t.probe_record_id = s.record_id",
    "faces": "t.record_id = s.record_id",
    "rejects": "t.record_id = s.record_id",
    "photos": "t.record_id = s.record_id",
}
REDACTED = "[redacted: erasure]"

@dataclass(frozen=True)
class EraseResult:
    run_id: str
    records: int
    records_found: int
    rows_deleted: dict[str, int]
    index_versions: dict[str, str]
    retired_models: tuple[str, ...]
    index_files_removed: int
    vacuumed: tuple[str, ...]


def read_record_ids(path: str) -> list[str]:
    """Record ids from a text file, one a line; blank lines and ``#`` comments are skipped.

    Raises:
        InputError: the file does not exist.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"record id file not found: {path}")
    lines = (line.strip() for line in file.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def check_record_ids(record_ids: Sequence[str]) -> list[str]:
    """The distinct, stripped ids, in order.

    Raises:
        TypeError: ``record_ids`` is a single string or holds a non-string.
        InputError: no id was given, or one is empty.
    """
    if isinstance(record_ids, str):
        raise TypeError("record_ids must be a sequence of ids, not one string")
    bad = [type(r).__name__ for r in record_ids if not isinstance(r, str)]
    if bad:
        raise TypeError(f"record_ids must be strings, got {sorted(set(bad))}")
    ids = [r.strip() for r in record_ids]
    if not ids or any(not r for r in ids):
        raise InputError("erase needs at least one record id, and no empty ones")
    return list(dict.fromkeys(ids))


def transform_cluster_keys(clusters: DataFrame, erased: DataFrame) -> DataFrame:
    """``run_id, cluster_id`` of every cluster with an erased record (``erased.record_id``) as a member.

    The cluster id and the strongest link are members too, so membership finds every cluster naming a record.
    """
    return (
        clusters.alias("c")
        .join(F.broadcast(erased.alias("e")), F.col("c.record_id") == F.col("e.record_id"), how="left_semi")
        .select("run_id", "cluster_id")
        .distinct()
    )


def transform_dq_mentions(dq_results: DataFrame, tokens: DataFrame, column: str = "observed",
                          key: Sequence[str] = get_spec("dq_results").key) -> DataFrame:
    """Keys (``key``) of the rows whose ``column`` text contains one of ``tokens.token``."""
    key = list(key)
    return (
        dq_results.alias("t")
        .join(F.broadcast(tokens.alias("s")), F.instr(F.col(f"t.{column}"), F.col("s.token")) > 0, how="left_semi")
        .select(*key)
        .distinct()
    )



def redact_dq_results(spark: SparkSession, cfg: Config, tokens: Sequence[str], table: str = "dq_results",
                      column: str = "observed") -> int:
    """Replace ``column`` of ``table`` (``dq_results.observed``, ``runs.error``) by a redaction mark where it
    quotes one of ``tokens``; return how many rows."""
    if not tokens or not table_exists(spark, cfg, table):
        return 0
    token_df = spark.createDataFrame([(t,) for t in tokens], "token string")
    spec = get_spec(table)
    keys = transform_dq_mentions(read_table(spark, cfg, table), token_df, column, spec.key).collect()
    if keys:
        key_df = spark.createDataFrame(keys, T.StructType([spec.schema[k] for k in spec.key]))
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.key)
        target = DeltaTable.forPath(spark, cfg.table_path(table))
        target.alias("t").merge(key_df.alias("s"), cond).whenMatchedUpdate(set={column: F.lit(REDACTED)}).execute()
    log.info("%s: %d rows redacted", table, len(keys))
    return len(keys)



def recogniser_names(spark: SparkSession, cfg: Config) -> dict[str, str]:
    """Registry name of each model id that has published index versions.

    Raises:
        InputError: a model id with an index is no longer in ``models.registry``, so its index cannot be
            rebuilt without the erased faces (checked before anything is deleted).
    """
    if not table_exists(spark, cfg, "index_manifest"):
        return {}
    indexed = [r[0] for r in read_table(spark, cfg, "index_manifest").select("model_id").distinct().collect()]
    by_id = {recogniser_id(cfg, name): name for name in configured_recognisers(cfg)}
    missing = sorted(m for m in indexed if m not in by_id)
    if missing:
        raise InputError(f"index_manifest holds indexes of {missing}, which models.registry lacks: add the entries "
                         "back so that erasure can rebuild those indexes")
    return {m: by_id[m] for m in indexed}


def rebuild_indexes(spark: SparkSession, cfg: Config, names: dict[str, str],
                    run_id: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """Build the next index version of every indexed recogniser from the faces that remain.

    Returns:
        The version in force per model id, and the model ids whose gallery is now empty (retired: their
        index files are removed by :func:`purge_index_files`).
    """
    from facelink.index.gallery import searchable_faces
    from facelink.index.publish import build_and_publish

    if not names:
        return {}, ()
    faces = read_table(spark, cfg, "faces")
    searchable = {m: searchable_faces(faces, m, cfg.index.gallery_quality).limit(1).count() > 0 for m in names}
    versions: dict[str, str] = {}
    for i, (model_id, name) in enumerate(sorted(names.items())):
        if not searchable[model_id]:
            log.warning("no searchable gallery faces remain for %s: its index is retired", model_id)
            continue
        result = build_and_publish(spark, cfg.with_overrides([f"models.recogniser={name}"]),
                                   run_id=f"{run_id}-index{i}")
        versions[model_id] = result.index_version
    return versions, tuple(sorted(m for m, ok in searchable.items() if not ok))


def _file_key(uri: str) -> str:
    """One spelling per file: a local path resolved (links, ``file:``), a remote URI as it is."""
    if is_local(uri):
        return os.path.realpath(uri.removeprefix("file://") if uri.startswith("file://") else uri.removeprefix("file:"))
    return uri.rstrip("/")


def index_files_in_force(spark: SparkSession, cfg: Config, retired: Sequence[str] = ()) -> set[str]:
    """The index and ids files of the version in force of each model (less ``retired``), one spelling each
    (:func:`_file_key`)."""
    if not table_exists(spark, cfg, "index_manifest"):
        return set()
    rows = read_table(spark, cfg, "index_manifest").select(
        "model_id", "index_version", "built_at", "index_path", "ids_path"
    ).collect()
    latest: dict[str, tuple[dt.datetime, str]] = {}
    for r in rows:  # the same order as facelink.index.gallery.current_index: newest built_at, then version
        key = (r["built_at"], r["index_version"])
        if r["model_id"] not in latest or key > latest[r["model_id"]]:
            latest[r["model_id"]] = key
    return {
        _file_key(p)
        for r in rows
        if r["model_id"] not in retired and (r["built_at"], r["index_version"]) == latest[r["model_id"]]
        for p in (r["index_path"], r["ids_path"])
    }


def purge_index_files(spark: SparkSession, cfg: Config, retired: Sequence[str] = ()) -> int:
    """Delete every file under ``<lake>/indexes`` that no version in force references; return how many.

    Versions that are not in force, files of failed or killed builds (unpublished prefixes) and the indexes
    of ``retired`` models all go. An unchanged partition of the version in force points at an earlier
    version's prefix: that file stays. Works the same on a local lake and an object store (``LakeFs``).
    """
    lake = lake_fs(cfg)
    root = lake_uri(cfg, "indexes")
    files = lake.list_files(root)
    if not files:
        return 0
    keep = index_files_in_force(spark, cfg, retired)
    removed = 0
    for uri in files:
        if _file_key(uri) not in keep:
            lake.delete(uri)
            removed += 1
    if is_local(root):  # empty folders left by the deleted versions
        local_root = _file_key(root)
        for folder, _, _ in sorted(os.walk(local_root), key=lambda w: w[0].count(os.sep), reverse=True):
            if folder != local_root and not os.listdir(folder):
                os.rmdir(folder)
    log.info("removed %d index files no version in force uses", removed)
    return removed


def _photos_of(spark: SparkSession, cfg: Config, keys: DataFrame) -> list[tuple[str, str]]:
    """(record_id, photo_id) of the records' photos."""
    if not table_exists(spark, cfg, "photos"):
        return []
    photos = read_table(spark, cfg, "photos").select("record_id", "photo_id")
    found = photos.join(F.broadcast(keys), "record_id", how="left_semi").collect()
    return [(r["record_id"], r["photo_id"]) for r in found]


def erase_rows(spark: SparkSession, cfg: Config, keys: DataFrame, photo_ids: Sequence[str],
               record_ids: Sequence[str]) -> dict[str, int]:
    """Delete (or redact) every row naming the records of ``keys``; return the rows affected per table."""
    deleted: dict[str, int] = {}
    if table_exists(spark, cfg, "duplicate_clusters"):
        clusters = transform_cluster_keys(read_table(spark, cfg, "duplicate_clusters"), keys).collect()
        cluster_keys = spark.createDataFrame(clusters, "run_id string, cluster_id string")
        deleted["duplicate_clusters"] = delete_matching(
            spark, cfg, "duplicate_clusters", cluster_keys, "t.run_id = s.run_id AND t.cluster_id = s.cluster_id"
        ) if clusters else 0
    for table, condition in RECORD_CONDITIONS.items():
        deleted[table] = delete_matching(spark, cfg, table, keys, condition)
    # GX samples print values with repr(): a record id appears quoted; a photo id is distinctive as it is.
    deleted["dq_results"] = redact_dq_results(spark, cfg, [*(repr(r) for r in record_ids), *photo_ids])
    # A failed run's error text may quote what it failed on (runs only; audit errors are pseudonymised).
    deleted["runs"] = redact_dq_results(spark, cfg, [*record_ids, *photo_ids], "runs", "error")
    return deleted


def erasure_traces(spark: SparkSession, cfg: Config, keys: DataFrame, record_ids: Sequence[str]) -> Traces:
    """What identifies the records in files beside the tables (read before their rows go): their ids, photo
    ids, ingested file names and embeddings."""
    photo_ids: list[str] = []
    paths: list[str] = []
    for table in ("photos", "rejects"):
        if table_exists(spark, cfg, table):
            rows = read_table(spark, cfg, table).join(F.broadcast(keys), "record_id", how="left_semi").select(
                "photo_id", "source_path")
            for r in rows.collect():
                photo_ids += [r["photo_id"]] if r["photo_id"] else []
                paths.append(r["source_path"])
    vectors: list[bytes] = []
    if table_exists(spark, cfg, "faces"):
        faces = read_table(spark, cfg, "faces").filter(F.col("embedding").isNotNull())
        found = faces.join(F.broadcast(keys), "record_id", how="left_semi").select("embedding").collect()
        vectors = [np.asarray(r["embedding"], np.float32).tobytes() for r in found]
    return Traces.of(record_ids, photo_ids, paths, vectors)


def run(spark: SparkSession, cfg: Config, record_ids: Sequence[str], run_id: str | None = None) -> EraseResult:
    """Erase ``record_ids`` from every table, rebuild the indexes without them, and vacuum.

    Raises:
        RefusedError: operator, an allowed purpose or authority is missing (the refusal is audited).
        InputError: no record id, or an indexed model is missing from the registry (nothing is deleted).
    """
    run_id = run_id or new_run_id(JOB)
    with RunRecorder(spark, cfg, JOB, run_id) as rec:
        require_accountability(cfg, JOB)
        ids = check_record_ids(record_ids)
        hours = cfg.retention.vacuum_hours
        if hours < 0:
            raise ValueError(f"retention.vacuum_hours must be >= 0, got {hours}")
        names = recogniser_names(spark, cfg)
        present = [t for t in (*PERSONAL_TABLES, "runs", "index_manifest") if table_exists(spark, cfg, t)]
        for table in present:
            rec.read(table)
        log.info("erase %s: %d records requested", run_id, len(ids))
        keys = spark.createDataFrame([(r,) for r in ids], "record_id string")
        photos = _photos_of(spark, cfg, keys)
        traces = erasure_traces(spark, cfg, keys, ids)
        deleted = erase_rows(spark, cfg, keys, sorted({p for _, p in photos}), ids)
        versions, retired = rebuild_indexes(spark, cfg, names, run_id)
        removed = purge_index_files(spark, cfg, retired)
        vacuumed = vacuum_tables(spark, cfg, (*PERSONAL_TABLES, "runs"), hours)
        swept = sweep(cfg.lake_root, traces, lake_fs(cfg))
        result = EraseResult(run_id, len(ids), len({r for r, _ in photos}), deleted, versions, retired, removed,
                             vacuumed)
        rec.counts.update(records=result.records, records_found=result.records_found,
                          index_files_removed=removed, derived_files_removed=len(swept),
                          **{f"{t}_rows": n for t, n in deleted.items()})
        rec.detail.update(records=result.records, vacuum_hours=hours, index_versions=versions,
                          retired_models=list(retired), vacuumed=list(vacuumed))
        rec.index_version = next(iter(versions.values())) if len(versions) == 1 else None
        for table in present:
            if table in (*PERSONAL_TABLES, "runs"):
                rec.wrote(table)
        log.info("erase %s: %d of %d records found; rows deleted %s", run_id, result.records_found, result.records,
                 deleted)
        return result


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--record-id", dest="record_ids", action="append", default=[], metavar="ID",
                        help="a record to erase (repeatable)")
    parser.add_argument("--from-file", default=None, metavar="PATH",
                        help="text file of record ids, one a line (# comments allowed)")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        ids = [*args.record_ids, *(read_record_ids(args.from_file) if args.from_file else [])]
        res = run(spark, cfg, ids, args.run_id)
        print(f"erase {res.run_id}: {res.records_found} of {res.records} records found; "
              f"{sum(res.rows_deleted.values())} rows erased; index versions {res.index_versions or 'unchanged'}; "
              f"{res.index_files_removed} index files removed; vacuumed {len(res.vacuumed)} tables")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
