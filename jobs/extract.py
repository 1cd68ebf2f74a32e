"""Detect, align, score quality and embed the faces of ``photos`` into the ``faces`` Delta table.

Incremental: only photos without ``faces`` rows for the configured recogniser's ``model_id`` are processed,
so a rerun adds nothing and switching the model adds rows for the new model beside the old ones. The work
(:mod:`facelink.extraction`) runs in ``mapInPandas`` over Arrow batches: the models load once per Python worker
(cached by a key made of plain values chosen on the driver) and thread counts are pinned to the task's cores.

Run: ``python -m jobs.extract --env local [--role gallery|probe] [--set models.recogniser=dlib_resnet34_128d]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pyspark.sql import SparkSession

from facelink.config import Config
from facelink.extraction.run import JOB, ExtractResult, extract_faces


def run(spark: SparkSession, cfg: Config, role: str | None = None, run_id: str | None = None,
        recogniser: str | None = None) -> ExtractResult:
    """Extract faces of every photo not yet processed with the configured recogniser."""
    return extract_faces(spark, cfg, role, run_id, recogniser)


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--role", choices=["gallery", "probe"], default=None, help="default: both")
    parser.add_argument("--recogniser", default=None,
                        help="registry or models.fusions name; default models.recogniser")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        res = run(spark, cfg, args.role, args.run_id, args.recogniser)
        print(f"extract {res.run_id} ({res.model_id}): {res.photos} photos -> {res.faces} faces, "
              f"{res.status_rows} photos without a usable face")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
