"""Run in a fresh Python process by tests/test_objectstore_pipeline.py: facelink entry points in order, in one
SparkSession, then what the test compares written to a JSON file.

A process of its own because the suite's SparkSession is local without the s3a jars (a JVM takes its jars once,
at start), and because the test runs it in an empty working directory and checks that nothing is written there
or under the repository.

Usage::

    python -m tests.objectstore_chain --steps '[["jobs.calibrate", ["--limit", "300", ...]],
                                                ["facelink.nightly", ["--sample", ...]]]'
        --out /tmp/x/out.json --set lake.root=s3a://bucket/lake --set lake.s3.endpoint=... [--block-publish]

Each step is ``[module, argv]`` whose ``main(argv)`` is called (``facelink.nightly`` or a job); a step exiting
non-zero stops the run with its code. ``--block-publish`` makes ``build_index`` write its files and then wait
before its manifest commit (the test kills the process there). ``--out`` gets, from the lake of the ``--set``
overrides: the index version in force and its files, and the ``matches`` and ``duplicate_candidates`` rows of
the run ids in ``--runs``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F


def block_publish() -> None:
    """``build_index`` writes the new version's files, says so on stderr, then blocks before its Delta commit."""
    from facelink.index import publish as index_publish

    def blocked(*args: Any, **kwargs: Any) -> None:
        print("BLOCKED-BEFORE-PUBLISH", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)

    index_publish.publish = blocked  # type: ignore[assignment]


def dump(overrides: list[str], runs: list[str]) -> dict[str, Any]:
    from facelink.config import load_config
    from facelink.index.gallery import current_index
    from facelink.lake.tables import read_table, table_exists
    from facelink.registry import recogniser_id
    from facelink.session import build_session

    cfg = load_config("test", overrides)
    spark = build_session(cfg)
    version, rows = current_index(spark, cfg, recogniser_id(cfg))
    out: dict[str, Any] = {"index_version": version,
                           "index_files": sorted(str(r[k]) for r in rows for k in ("index_path", "ids_path"))}
    if table_exists(spark, cfg, "matches"):
        matches = read_table(spark, cfg, "matches").filter(F.col("run_id").isin(runs))
        out["matches"] = sorted([r["run_id"], r["probe_record_id"], r["rank"], r["candidate_record_id"], r["band"],
                                 float(r["score"])] for r in matches.collect())
    if table_exists(spark, cfg, "duplicate_candidates"):
        pairs = read_table(spark, cfg, "duplicate_candidates").filter(F.col("run_id").isin(runs))
        out["duplicates"] = sorted([r["run_id"], r["record_id_a"], r["record_id_b"], r["band"], float(r["score"])]
                                   for r in pairs.collect())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", required=True, help="JSON list of [module, argv]")
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", default="", help="comma-separated run ids whose candidates go to --out")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--block-publish", action="store_true")
    args = parser.parse_args(argv)
    if args.block_publish:
        block_publish()
    for module, step_argv in json.loads(args.steps):
        code = importlib.import_module(module).main(step_argv)
        if code:
            print(f"step {module} exited {code}", file=sys.stderr)
            return int(code)
    result = dump(args.overrides, [r for r in args.runs.split(",") if r])
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
