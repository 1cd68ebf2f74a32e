"""Expire probe photos after ``retention.probe_days``, with what derives from them, and vacuum.

A probe photo (``photos.role = 'probe'``) whose ``ingested_at`` is more than ``retention.probe_days`` days
before now expires: its ``photos`` row, its ``faces`` rows (probe faces are never in a gallery index, so no
index is rebuilt), the ``matches`` and ``probe_status`` rows of its searches, and the ``rejects`` of probe
batches rejected before the same cutoff. Gallery photos never expire here; they leave by ``jobs.erase``.
Reviews of matches are decisions, kept under their own rules; they keep the ids they quote.

Rows go by MERGE against the expired photo keys (the ids never enter the Delta log, see ``jobs.erase``).
Every table holding personal data is then vacuumed with ``retention.vacuum_hours`` (this daily run is also what
finally removes the files an erasure dropped; see :func:`facelink.lake.tables.vacuum_tables` for retentions below
Delta's 168-hour safety interval). The run is audited like any other: operator, purpose ``retention``, authority
(e.g. the retention policy's reference).

Run: ``python -m jobs.retention --env local --set audit.operator=... --set audit.purpose=retention
--set audit.authority=... [--now 2024-05-01T00:00:00+00:00]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.errors import InputError
from facelink.lake.runs import RunRecorder, new_run_id, require_accountability
from facelink.lake.tables import (
    PERSONAL_TABLES,
    delete_matching,
    delete_where,
    read_table,
    table_exists,
    vacuum_tables,
)

log = logging.getLogger(__name__)
JOB = "retention"

#: Per table, the MERGE condition matching a target row ``t`` to an expired probe photo ``s``; photos last.
EXPIRED_CONDITIONS = {
    "matches": "t.probe_photo_id = s.photo_id",
    "probe_status": "t.probe_photo_id = s.photo_id",
    "faces": "t.role = 'probe' AND t.record_id = s.record_id AND t.photo_id = s.photo_id",
    "photos": "t.role = 'probe' AND t.record_id = s.record_id AND t.photo_id = s.photo_id",
}


@dataclass(frozen=True)
class RetentionResult:
    run_id: str
    cutoff: dt.datetime
    expired_photos: int
    rows_deleted: dict[str, int]
    vacuumed: tuple[str, ...]


def retention_cutoff(now: dt.datetime, probe_days: int) -> dt.datetime:
    """The instant before which probe photos expire.

    Raises:
        ValueError: ``now`` is naive, or ``probe_days`` is negative.
    """
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone (e.g. datetime.now(UTC))")
    if probe_days < 0:
        raise ValueError(f"retention.probe_days must be >= 0, got {probe_days}")
    return now - dt.timedelta(days=probe_days)


def transform_expired(photos: DataFrame, cutoff: dt.datetime) -> DataFrame:
    """``record_id, photo_id`` of the probe photos ingested before ``cutoff``."""
    return photos.filter((F.col("role") == "probe") & (F.col("ingested_at") < F.lit(cutoff))).select(
        "record_id", "photo_id"
    ).distinct()


def run(spark: SparkSession, cfg: Config, now: dt.datetime | None = None,
        run_id: str | None = None) -> RetentionResult:
    """Delete expired probe photos and their derived rows, then vacuum the personal-data tables.

    Raises:
        RefusedError: operator, an allowed purpose or authority is missing (the refusal is audited).
    """
    run_id = run_id or new_run_id(JOB)
    with RunRecorder(spark, cfg, JOB, run_id) as rec:
        require_accountability(cfg, JOB)
        cutoff = retention_cutoff(now or dt.datetime.now(dt.UTC), cfg.retention.probe_days)
        present = [t for t in PERSONAL_TABLES if table_exists(spark, cfg, t)]
        for table in present:
            rec.read(table)
        deleted: dict[str, int] = {}
        expired_count = 0
        if "photos" in present:
            # Pinned before anything is deleted: the keys must not be recomputed from a changed photos table.
            expired = transform_expired(read_table(spark, cfg, "photos"), cutoff).localCheckpoint(eager=True)
            expired_count = expired.count()
            if expired_count:
                for table, condition in EXPIRED_CONDITIONS.items():
                    deleted[table] = delete_matching(spark, cfg, table, expired, condition)
        deleted["rejects"] = delete_where(
            spark, cfg, "rejects", (F.col("role") == "probe") & (F.col("rejected_at") < F.lit(cutoff))
        )
        vacuumed = vacuum_tables(spark, cfg, PERSONAL_TABLES, cfg.retention.vacuum_hours)
        result = RetentionResult(run_id, cutoff, expired_count, deleted, vacuumed)
        rec.counts.update(expired_photos=expired_count, **{f"{t}_rows": n for t, n in deleted.items()})
        rec.detail.update(cutoff=cutoff.isoformat(), probe_days=cfg.retention.probe_days,
                          vacuum_hours=cfg.retention.vacuum_hours, vacuumed=list(vacuumed))
        for table in present:
            rec.wrote(table)
        log.info("retention %s: %d probe photos ingested before %s expired; rows deleted %s", run_id,
                 expired_count, cutoff.isoformat(), deleted)
        return result


def parse_now(text: str | None) -> dt.datetime | None:
    """``--now`` as an aware datetime (UTC when the text gives no zone).

    Raises:
        InputError: the text is not an ISO 8601 date-time.
    """
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"--now {text!r}: expected an ISO 8601 date-time") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--now", default=None, help="evaluate expiry as of this ISO date-time (default: now)")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        res = run(spark, cfg, parse_now(args.now), args.run_id)
        print(f"retention {res.run_id}: {res.expired_photos} probe photos ingested before "
              f"{res.cutoff.isoformat()} expired; {sum(res.rows_deleted.values())} rows deleted; "
              f"vacuumed {len(res.vacuumed)} tables")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
