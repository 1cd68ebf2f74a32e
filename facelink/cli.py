"""The job contract: ``python -m jobs.<name> --env local [--set k=v]...`` and ``spark-submit jobs/<name>.py``.

Every job's ``main(argv)`` calls :func:`run_job`, which parses the common arguments, loads the configuration,
builds the one SparkSession, runs the job and turns a :class:`FaceLinkError` into a one-line reason on
stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from pyspark.sql import SparkSession

from facelink import identifiers
from facelink.config import Config, ConfigError, load_config, masked_dict
from facelink.errors import FaceLinkError
from facelink.session import build_session

log = logging.getLogger(__name__)

#: argparse ``type=`` of every option that names a run: an invalid one is a usage error (exit code 2).
RUN_ID = identifiers.argparse_type("run id")

JobFn = Callable[[SparkSession, Config, argparse.Namespace], object]


def base_parser(job: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes."""
    parser = argparse.ArgumentParser(prog=f"jobs.{job}", description=description)
    parser.add_argument("--env", default="local", help="configuration environment: conf/<env>.yaml")
    parser.add_argument("--conf-dir", default=None, help="folder holding base.yaml and <env>.yaml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one configuration key, e.g. --set lake.root=/data/lake (repeatable)",
    )
    parser.add_argument("--run-id", default=None, type=RUN_ID,
                        help="run id (a rerun with the same id replaces its output): letters, digits, _ . -")
    parser.add_argument("--log-level", default="INFO")
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_job(
    job: str, fn: JobFn, parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
    spark: SparkSession | None = None,
) -> int:
    """Parse ``argv``, load configuration, build the session and run ``fn``; return the exit code."""
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        cfg = load_config(args.env, args.overrides, args.conf_dir)
        log.debug("configuration: %s", masked_dict(cfg))
        session = spark or build_session(cfg)
        fn(session, cfg, args)
    except ConfigError as exc:
        print(f"{job}: configuration error: {exc}", file=sys.stderr)
        return 2
    except FaceLinkError as exc:
        print(f"{job}: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
