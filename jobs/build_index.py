"""Build and publish the gallery's FAISS indexes, one per archive partition, from ``faces``.

Searchable faces are the primary gallery faces of the configured recogniser (``index.gallery_quality``: with or
without those failing the quality rule; a change of it rebuilds in full). Per partition
the index kind follows its size and the memory budget; the version is published by appending all its
``index_manifest`` rows in one Delta commit (:mod:`facelink.index.publish`). Incremental unless ``--full``.

Run: ``python -m jobs.build_index --env local [--full]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pyspark.sql import SparkSession

from facelink.config import Config
from facelink.index.publish import JOB, BuildResult, build_and_publish


def run(spark: SparkSession, cfg: Config, full: bool = False, run_id: str | None = None,
        seed: int = 0) -> BuildResult:
    """Build a new index version (incrementally unless ``full``) and publish it."""
    return build_and_publish(spark, cfg, full, run_id, seed)


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--full", action="store_true", help="rebuild every partition")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        res = run(spark, cfg, args.full, args.run_id)
        print(f"build_index {res.run_id}: version {res.index_version} ({res.model_id}), {res.partitions} "
              f"partitions, {res.vectors} vectors, {res.rebuilt} rebuilt")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
