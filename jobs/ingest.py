"""Ingest an archive (or a nightly probe batch) of photos into the ``photos`` Delta table.

Input is a manifest (CSV or Parquet with ``record_id,path`` and any metadata columns; ``path`` relative to
the manifest's folder or absolute) or a folder of images whose file names give the record id. Every input
row ends as exactly one of: a new photo, a photo already present, or a reject with a reason
(:mod:`facelink.ingest.photos`).

Run: ``python -m jobs.ingest --env local --input PATH [--role probe]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pyspark.sql import SparkSession

from facelink.config import Config
from facelink.ingest.photos import JOB, IngestResult, ingest_photos


def run(spark: SparkSession, cfg: Config, input_path: str, role: str | None = None,
        run_id: str | None = None) -> IngestResult:
    """Ingest ``input_path`` (manifest file or folder) as ``role``; return the counts."""
    return ingest_photos(spark, cfg, input_path, role, run_id)


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--input", required=True, help="manifest CSV/Parquet, or a folder of images")
    parser.add_argument("--role", choices=["gallery", "probe"], default=None)

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        res = run(spark, cfg, args.input, args.role, args.run_id)
        print(f"ingest {res.run_id}: {res.input_rows} rows = {res.new_photos} new + {res.already_present} "
              f"already present + {res.rejects} rejects")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
