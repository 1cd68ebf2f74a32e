"""The nightly chain, defined once: the Airflow DAG builds its tasks from :data:`STEPS`, and ``make demo``
runs the same steps in order in one local SparkSession.

Each step is one job (``jobs/<job>.py``) with arguments that may name the night's parameters:
``{run_date}`` (Airflow's logical date, YYYY-MM-DD), ``{gallery_input}``, ``{probe_input}``, ``{operator}``,
``{purpose}`` (de-duplication's), ``{screening_purpose}`` (matching's), ``{authority}``. Run ids are
derived from the job and the date, so a retried task or a re-run of a night replaces exactly what that
night wrote.

Run: ``python -m facelink.nightly --env local --sample sample [--run-date 2026-11-22]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the DAG file imports this module: no Spark at import time
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One task of the chain."""

    task_id: str
    job: str
    args: tuple[str, ...]
    upstream: tuple[str, ...] = ()
    accountable: bool = False  # takes operator / purpose / authority
    purpose_param: str = "purpose"  # the night parameter that holds this step's audit purpose

    def argv(self, params: Mapping[str, str]) -> list[str]:
        """The job's command-line arguments for one night (``--run-id`` included)."""
        argv = [a.format(**params) for a in self.args]
        argv += ["--run-id", run_id(self.task_id, params["run_date"])]
        if self.accountable:
            argv += [
                "--set", f"audit.operator={params['operator']}",
                "--set", f"audit.purpose={params[self.purpose_param]}",
                "--set", f"audit.authority={params['authority']}",
            ]
        return argv


def run_id(task_id: str, run_date: str) -> str:
    """The run id of a task on a night: stable, so reruns of the night replace their own output."""
    return f"{task_id}-{run_date}"


STEPS: tuple[Step, ...] = (
    Step("ingest_gallery", "ingest", ("--input", "{gallery_input}", "--role", "gallery")),
    Step("ingest_probes", "ingest", ("--input", "{probe_input}", "--role", "probe")),
    Step("quality_photos", "quality", ("--tables", "photos,rejects"), ("ingest_gallery", "ingest_probes")),
    Step("extract", "extract", (), ("quality_photos",)),
    Step("quality_faces", "quality", ("--tables", "faces", "--scope-run-id", "extract-{run_date}"), ("extract",)),
    # Once per recogniser: the score -> FMR map that turns target FPIRs into score thresholds.
    Step("calibrate", "calibrate", ("--if-missing",), ("quality_faces",)),
    Step("build_index", "build_index", (), ("calibrate",)),
    Step("dedup", "dedup", (), ("build_index",), accountable=True),
    Step("quality_dedup", "quality", ("--tables", "duplicate_candidates", "--scope-run-id", "dedup-{run_date}"),
         ("dedup",)),
    Step("match", "match", ("--probe-run-id", "ingest_probes-{run_date}"), ("build_index",), accountable=True,
         purpose_param="screening_purpose"),
    Step("quality_matches", "quality", ("--tables", "matches,probe_status", "--scope-run-id", "match-{run_date}"),
         ("match",)),
    Step("report", "report", ("--match-run-id", "match-{run_date}", "--dedup-run-id", "dedup-{run_date}"),
         ("quality_dedup", "quality_matches")),
)


def params_for(run_date: str, gallery_input: str, probe_input: str, operator: str, purpose: str,
               screening_purpose: str, authority: str) -> dict[str, str]:
    """The night's parameters, by the names that :data:`STEPS` arguments use."""
    return {"run_date": run_date, "gallery_input": gallery_input, "probe_input": probe_input,
            "operator": operator, "purpose": purpose, "screening_purpose": screening_purpose,
            "authority": authority}


def run_steps(spark: SparkSession, env: str, params: Mapping[str, str],
              overrides: Sequence[str] = ()) -> list[dict[str, object]]:
    """Run every step in order in ``spark``; stop at the first failing step (its exit code)."""
    summary: list[dict[str, object]] = []
    for step in STEPS:
        argv = ["--env", env, *step.argv(params)]
        for item in overrides:
            argv += ["--set", item]
        module = importlib.import_module(f"jobs.{step.job}")
        start = time.perf_counter()
        code = module.main(argv, spark=spark)
        summary.append({"step": step.task_id, "exit": code, "seconds": round(time.perf_counter() - start, 1)})
        log.info("step %s exit %s in %.1fs", step.task_id, code, summary[-1]["seconds"])
        if code:
            raise SystemExit(code)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facelink.nightly", description="run the nightly chain locally")
    parser.add_argument("--env", default="local")
    parser.add_argument("--sample", default="sample", help="folder with gallery.csv, probes.csv, truth.csv")
    parser.add_argument("--run-date", default=dt.date.today().isoformat())
    parser.add_argument("--operator", default="demo-operator")
    parser.add_argument("--purpose", default="duplicate_enrolment_check", help="de-duplication's audit purpose")
    parser.add_argument("--screening-purpose", default="application_screening", help="matching's audit purpose")
    parser.add_argument("--authority", default="DEMO-CASE-0001")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sample = Path(args.sample).resolve()
    params = params_for(args.run_date, str(sample / "gallery.csv"), str(sample / "probes.csv"), args.operator,
                        args.purpose, args.screening_purpose, args.authority)
    from facelink.config import load_config
    from facelink.report.summary import format_summary, summarise, write_summary
    from facelink.session import build_session

    cfg = load_config(args.env, args.overrides)
    spark = build_session(cfg)
    timings = run_steps(spark, args.env, params, args.overrides)
    summary = summarise(spark, cfg, {s.task_id: run_id(s.task_id, args.run_date) for s in STEPS},
                        sample / "truth.csv")
    summary["seconds"] = {str(t["step"]): t["seconds"] for t in timings}
    out = write_summary(cfg, summary, args.run_date)
    print(format_summary(summary))
    print(f"  summary: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
