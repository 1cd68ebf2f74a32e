"""Evaluate the pipeline's accuracy on a labelled photo set; write ``evaluations`` and a report.

The run ingests the set (``jobs.ingest``) and extracts it with the configured recognisers (``jobs.extract``)
into the lake given by the configuration, then extracts the other variants it compares (flip TTA, other
recogniser, other detector size) once into a cache under ``<lake>/evaluation/embeddings/`` and measures,
for the bare single-photo reference, each issue-9 technique alone, the configured default and all
techniques together: 1:1 verification on LFW-format pairs (or generated identity folds), NIST-style 1:N
identification and planted-duplicate recall on the :mod:`facelink.sample` archive, per-group rates when the
set has group labels, calibration on held-back folds, and the time cost per photo. Figures go to the
``evaluations`` table (replaced per run id) and to ``<lake>/reports/evaluation/<run_id>/``.

The job is accountable like match and dedup (``audit.operator``, ``audit.purpose=evaluation``,
``audit.authority``; the ingest and extraction it runs are audited under the same purpose), and refuses a
lake whose gallery holds photos that no evaluation ingested unless ``--allow-production-gallery`` is given.

Run: ``python -m jobs.evaluate --env local --set lake.root=./lake_eval --set audit.operator=... \
--set audit.purpose=evaluation --set audit.authority=... \
--manifest ../shared/datasets/lfw_dev/manifest.csv --pairs ../shared/datasets/lfw_dev/pairs.txt --sample full``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink import identifiers
from facelink.config import Config
from facelink.errors import InputError, RefusedError
from facelink.evaluation import report as rep
from facelink.evaluation.dataset import (
    SET_COLUMN,
    LabelledSet,
    load_fixes,
    read_labelled_set,
    write_ingest_manifest,
)
from facelink.evaluation.embeddings import (
    EmbeddingStore,
    Variant,
    check_against_faces,
    extract_variants,
    measure_cost,
)
from facelink.evaluation.runner import Inputs, Outputs, draw_false_candidates, evaluate
from facelink.evaluation.settings import EvaluationSettings
from facelink.evaluation.suite import PairsProtocol, build_search_protocol, generate_pairs, load_pairs
from facelink.evaluation.techniques import EvalConfig, default_config, evaluation_configs
from facelink.extraction.run import extract_faces
from facelink.ingest.photos import ingest_photos
from facelink.lake.fs import is_local, lake_fs, lake_uri, local_path
from facelink.lake.runs import RunRecorder, new_run_id, require_accountability
from facelink.lake.tables import read_table, replace_where, table_exists
from facelink.registry import model_spec, recogniser_id
from facelink.report.publish import publish_folder
from facelink.search.calibration import band_levels
from schemas import get_spec

log = logging.getLogger(__name__)
JOB = "evaluate"
EVALUATIONS = get_spec("evaluations")


@dataclass(frozen=True)
class EvaluationResult:
    run_id: str
    report_dir: str
    rows: int
    headline: dict[str, Any]


def report_location(cfg: Config, run_id: str) -> str:
    """``<lake.root>/reports/evaluation/<run_id>``.

    Raises:
        ValueError: ``run_id`` is not a valid run id (the folder is removed and rewritten: it must be one
            folder under ``reports/evaluation``).
    """
    return lake_uri(cfg, "reports", "evaluation", identifiers.run_id(run_id))


def production_gallery_rows(spark: SparkSession, cfg: Config) -> int:
    """Gallery photos of the lake that no evaluation ingested (their ingest run's ``audit`` purpose is not
    ``evaluation``): a production archive, which an evaluation must not write beside."""
    if not table_exists(spark, cfg, "photos"):
        return 0
    evaluation_ingests = read_table(spark, cfg, "audit").filter(
        (F.col("job") == "ingest") & (F.col("purpose") == "evaluation") & (F.col("outcome") == "succeeded")
    ).select(F.col("run_id").alias("ingest_run_id"))
    gallery = read_table(spark, cfg, "photos").filter(F.col("role") == "gallery").select("ingest_run_id")
    return gallery.join(evaluation_ingests.distinct(), "ingest_run_id", how="left_anti").count()


def _pairs(labelled: LabelledSet, pairs_path: str | None, settings: EvaluationSettings) -> PairsProtocol:
    if pairs_path:
        return load_pairs(labelled, Path(pairs_path))
    return generate_pairs(labelled, settings.folds, settings.seed)


def _costs(cfg: Config, labelled: LabelledSet, configs: Sequence[EvalConfig], n: int) -> dict[str, Any]:
    """Extraction cost per photo of each configuration, as ``jobs.extract`` runs it: one pipeline that detects
    and aligns once and embeds with every member of a fused recogniser (each with its own flip TTA)."""
    if n <= 0:
        return {}
    order = np.random.default_rng(0).permutation(len(labelled))[:n]
    photos = [(labelled.root / labelled.paths[i]).read_bytes() for i in sorted(order)]
    measured: dict[tuple[Variant, ...], dict[str, float]] = {}
    for c in configs:
        key = tuple(c.variants)
        if key not in measured:
            measured[key] = measure_cost(cfg, key, photos)
    out: dict[str, Any] = {c.name: measured[tuple(c.variants)] for c in configs}
    out["_variants"] = {" + ".join(v.label for v in key): cost for key, cost in measured.items()}
    return out


def run(spark: SparkSession, cfg: Config, manifest: str, pairs: str | None = None, sample: str | None = None,
        group_column: str | None = None, group_pattern: str | None = None, configs: Sequence[str] | None = None,
        run_id: str | None = None, settings: EvaluationSettings | None = None,
        identity_fixes: str | None = None, allow_production_gallery: bool = False) -> EvaluationResult:
    """Evaluate on the labelled set of ``manifest``; see the module docstring.

    Args:
        manifest: ``manifest.csv`` of a labelled set (``path``, ``identity``).
        pairs: LFW ``pairs.txt`` for 1:1 verification; None: all within-fold pairs of generated folds.
        sample: ``small``, ``full`` or ``D,M,R,U,S`` counts: build the :mod:`facelink.sample` 1:N archive
            from the set and run the 1:N, duplicate and renewal protocols; None: 1:1 only.
        group_column: Manifest column with each photo's group label.
        group_pattern: Regular expression whose first group, searched in each path, is the group label.
        configs: Configuration names (default ``evaluation.configs``).
        run_id: Run id; a rerun with the same id replaces its rows and report.
        settings: Evaluation settings (default: :class:`EvaluationSettings`'s defaults).
        identity_fixes: ``lfw`` (the checked lfw_dev fixes), a ``key,identity`` CSV, or None: label
            corrections applied to the 1:N and calibration truth (LFW pairs keep their own labels).
        allow_production_gallery: run even though the lake holds gallery photos that no evaluation ingested.

    Raises:
        RefusedError: operator, authority or the purpose ``evaluation`` is missing, or the lake holds a
            production gallery and ``allow_production_gallery`` is false (audited, nothing is written).
    """
    settings = settings or EvaluationSettings()
    if configs:
        settings = settings.with_values(configs=tuple(configs))
    run_id = run_id or new_run_id(JOB)
    fixes = load_fixes(identity_fixes)
    labelled = read_labelled_set(manifest, group_column, group_pattern, fixes)
    evaluated = evaluation_configs(cfg, settings.configs, settings.alt_detect_sizes)
    default = default_config(cfg)
    target = report_location(cfg, run_id)
    local = local_path(target) if is_local(target) else None
    model_ids = {r: model_spec(cfg, r).model_id for c in [*evaluated, default] for r in c.recognisers}
    with RunRecorder(spark, cfg, JOB, run_id, model_id=recogniser_id(cfg)) as rec:
        require_accountability(cfg, JOB)
        rec.read("photos")
        rec.detail.update(allow_production_gallery=allow_production_gallery)
        production = production_gallery_rows(spark, cfg)
        if production and not allow_production_gallery:
            raise RefusedError(f"evaluate refused: the lake {cfg.lake_root} holds {production} gallery photos that "
                               "no evaluation ingested; evaluate in a lake of its own (--set lake.root=...), or "
                               "pass --allow-production-gallery")
        work = local if local is not None else Path(tempfile.mkdtemp(prefix="facelink-eval-"))
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        store, faces_checks = _extract(spark, cfg, labelled, evaluated, default, work, run_id)
        rec.read("faces")
        proto_pairs = _pairs(labelled, pairs, settings)
        search = build_search_protocol(labelled, work / "protocol", sample, settings.sample_seed) if sample else None
        outputs = evaluate(Inputs(labelled, store, proto_pairs, search, settings, cfg.match.k, model_ids,
                                  cfg.extract.align_method, recogniser_id(cfg), band_levels(cfg)), evaluated)
        costs = _costs(cfg, labelled, evaluated, settings.timing_photos)
        evaluated_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        report = _report(run_id, evaluated_at, labelled, settings, outputs, costs, faces_checks, proto_pairs, search,
                         manifest, sample)
        report["identity_fixes"] = {"source": identity_fixes, "fixes": fixes}
        for c in evaluated:
            if c.name in costs:
                outputs.rows += rep.cost_rows(c.name, costs[c.name])
        rows = rep.finish_rows(outputs.rows, run_id, report["model_ids"], report["digests"], evaluated_at)
        frame = spark.createDataFrame(
            [tuple(r[c] for c in EVALUATIONS.columns) for r in rows], EVALUATIONS.schema
        )
        replace_where(spark, cfg, EVALUATIONS, frame, "run_id", run_id)
        rec.wrote("evaluations")
        report["files"] = rep.write_plots(work, outputs.curves) + draw_false_candidates(
            labelled, outputs.false_pairs, settings.false_candidate_configs, work)
        rep.write_json(work, report)
        rep.write_summary(work, report)
        if local is None:
            publish_folder(lake_fs(cfg), work, target)
        headline = _headline(report)
        rec.counts.update(photos=len(labelled), rows=len(rows), configs=len(evaluated))
        rec.detail.update(manifest=manifest, pairs=pairs, sample=sample, report=target, digests=report["digests"],
                          identity_fixes=identity_fixes, headline=headline)
        log.info("evaluation %s: %d rows, report in %s", run_id, len(rows), target)
        return EvaluationResult(run_id, target, len(rows), headline)


def _extract(spark: SparkSession, cfg: Config, labelled: LabelledSet, evaluated: Sequence[EvalConfig],
             default: EvalConfig, work: Path, run_id: str) -> tuple[EmbeddingStore, list[dict[str, Any]]]:
    """Ingest and extract the set for real, then fill the variant cache; check ``faces`` against it."""
    eval_cfg = cfg.with_overrides([f"ingest.partition_column={SET_COLUMN}",
                                   f"ingest.allowed_roots={json.dumps([str(labelled.root.resolve())])}"])
    ingest_manifest = write_ingest_manifest(labelled, work / "ingest_manifest.csv")
    res = ingest_photos(spark, eval_cfg, str(ingest_manifest), role="gallery", run_id=f"{run_id}-ingest")
    if res.rejects:
        log.warning("%d photos of %s were rejected at ingest: they count as failures", res.rejects, labelled.name)
    extract_faces(spark, cfg, role="gallery", run_id=f"{run_id}-extract")
    variants = {v for c in [*evaluated, default] for v in c.variants}
    store = extract_variants(spark, cfg, labelled, variants, f"{cfg.lake_root.rstrip('/')}/evaluation/embeddings")
    weights = default.scoring.fusion_weights if default.fused else (1.0,)
    return store, [check_against_faces(spark, cfg, store, default.variants, weights)]


def _report(run_id: str, evaluated_at: dt.datetime, labelled: LabelledSet, settings: EvaluationSettings,
            outputs: Outputs, costs: dict[str, Any], faces_checks: list[dict[str, Any]], pairs: PairsProtocol,
            search: Any, manifest: str, sample: str | None) -> dict[str, Any]:
    digests = {"verification": pairs.digest, "calibration": pairs.digest,
               "cost": labelled.digest()}
    if search is not None:
        digests.update(identification=search.digest, dedup=search.digest)
    return {
        "run_id": run_id, "evaluated_at": evaluated_at,
        "labelled_set": {"name": labelled.name, "manifest": manifest, "photos": len(labelled),
                         "identities": len(set(labelled.identities)), "groups": labelled.groups is not None,
                         "digest": labelled.digest()},
        "protocols": {"pairs": pairs.source, "sample": sample,
                      "search_counts": search.counts if search is not None else None},
        "settings": {k: v for k, v in vars(settings).items()},
        "digests": digests, "faces_check": faces_checks, "cost": costs, **outputs.report,
    }


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in report["configs"]:
        ident = report["identification"].get(name)
        dedup = report["dedup"].get(name)
        verif = report["verification"].get(name)
        out[name] = {
            "fnir_at_fpir": {str(t): round(v["fnir"], 4) for t, v in ident["fnir_at_fpir"].items()} if ident else None,
            "dups_found": {str(t): v["found"] for t, v in dedup["recall_at_fpir"].items()} if dedup else None,
            "accuracy": round(verif["accuracy"], 4) if verif else None,
        }
    return out


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--manifest", required=True, help="labelled set manifest.csv (path, identity)")
    parser.add_argument("--pairs", default=None, help="LFW pairs.txt; default: generated identity folds")
    parser.add_argument("--sample", default=None,
                        help="1:N archive built from the set: small, full or D,M,R,U,S counts")
    parser.add_argument("--group-column", default=None, help="manifest column holding a group label")
    parser.add_argument("--group-pattern", default=None, help="regex whose group 1 in each path is its group")
    parser.add_argument("--configs", default=None, help="comma-separated configurations (evaluation.configs)")
    parser.add_argument("--allow-production-gallery", action="store_true",
                        help="run in a lake whose gallery holds photos no evaluation ingested (default: refuse)")
    parser.add_argument("--identity-fixes", default=None,
                        help="label fixes: 'lfw' (checked lfw_dev fixes) or a key,identity CSV")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        if args.group_column and args.group_pattern:
            raise InputError("give --group-column or --group-pattern, not both")
        configs = [c.strip() for c in args.configs.split(",") if c.strip()] if args.configs else None
        res = run(spark, cfg, args.manifest, args.pairs, args.sample, args.group_column, args.group_pattern,
                  configs, args.run_id, identity_fixes=args.identity_fixes,
                  allow_production_gallery=args.allow_production_gallery)
        print(f"evaluate {res.run_id}: {res.rows} figures; report in {res.report_dir}")
        print(json.dumps(res.headline, indent=1))

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
