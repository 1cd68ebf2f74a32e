"""Data-quality gate: run the GX suites of the named tables; a failed critical expectation stops the pipeline.

Each table is read at the Delta version noted when the gate starts (recorded in ``runs``/``audit``), and
optionally restricted to the rows of one run (``--scope-run-id``: the ingest, extract, match or dedup run
that wrote them). Every expectation's outcome goes to the ``dq_results`` table (a rerun with the same
``--run-id`` replaces that run's rows) and, when ``dq.data_docs`` is on, to Data Docs HTML under
``<lake.root>/dq_docs``. A failed *critical* expectation raises :class:`DataQualityError` (exit code 7)
naming the table, the expectation and what was observed; a failed *warning* is logged.

Run: ``python -m jobs.quality --env local --tables photos,rejects [--scope-run-id RUN]``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession

from facelink.config import Config
from facelink.dq.gate import QualityReport, build_docs, validate, write_results
from facelink.dq.suites import CHECKED_TABLES, DEPENDS_ON
from facelink.lake.runs import RunRecorder, new_run_id

log = logging.getLogger(__name__)
JOB = "quality"


def run(spark: SparkSession, cfg: Config, tables: Sequence[str], run_id: str | None = None,
        scope_run_id: str | None = None) -> QualityReport:
    """Run the gate over ``tables`` and return its report.

    Raises:
        ValueError: ``tables`` is empty or names a table without suites.
        DataQualityError: a critical expectation failed (after its results were written).
    """
    tables = list(dict.fromkeys(tables))
    unknown = [t for t in tables if t not in CHECKED_TABLES]
    if not tables or unknown:
        raise ValueError(f"tables: expected some of {', '.join(CHECKED_TABLES)}, got {tables}")
    run_id = run_id or new_run_id(JOB)
    with RunRecorder(spark, cfg, JOB, run_id) as rec:
        rec.detail.update(tables=tables, scope_run_id=scope_run_id)
        needed = dict.fromkeys([*tables, *(d for t in tables for d in DEPENDS_ON.get(t, ()))])
        versions = {name: rec.read(name) for name in needed}
        outcomes = validate(spark, cfg, tables, run_id, scope_run_id, versions)
        write_results(spark, cfg, run_id, outcomes)
        rec.wrote("dq_results")
        docs = build_docs(cfg, run_id) if cfg.dq.data_docs else None
        report = QualityReport(run_id, scope_run_id, tuple(outcomes), docs)
        rec.counts.update(expectations=len(outcomes), critical_failed=len(report.critical_failures),
                          warnings_failed=len(report.warnings))
        rec.detail.update(docs_index=docs)
        for outcome in report.warnings:
            log.warning("data-quality warning: %s", outcome.line())
        report.raise_for_critical()
        log.info("quality gate %s passed: %d expectations, %d warnings", run_id, len(outcomes),
                 len(report.warnings))
        return report


def parse_tables(text: str) -> list[str]:
    """``photos,rejects`` -> ``["photos", "rejects"]``; ``all`` -> every checked table."""
    if text.strip() == "all":
        return list(CHECKED_TABLES)
    tables = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in tables if t not in CHECKED_TABLES]
    if not tables or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown table(s) {unknown or text!r}: expected a comma-separated list of "
            f"{', '.join(CHECKED_TABLES)}"
        )
    return tables


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import RUN_ID, base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--tables", type=parse_tables, default=list(CHECKED_TABLES),
                        help=f"comma-separated tables to check, or 'all' (the default): "
                             f"{','.join(CHECKED_TABLES)}")
    parser.add_argument("--scope-run-id", default=None, type=RUN_ID,
                        help="check only the rows written by this run (ingest/extract/match/dedup run id)")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        report = run(spark, cfg, args.tables, args.run_id, args.scope_run_id)
        docs = f"; Data Docs: {report.docs_index}" if report.docs_index else ""
        print(f"quality {report.run_id}: passed, {len(report.outcomes)} expectations, "
              f"{len(report.warnings)} warning(s){docs}")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
