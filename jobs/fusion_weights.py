"""Choose the weights of the configured two-model fusion on a labelled set, by identity-disjoint cross-validation.

The set is ingested and its photos embedded by the evaluation's cached variant passes (the same cache
``jobs.evaluate`` fills), with each member's flip TTA and the detector size of the configured recogniser;
then :func:`facelink.evaluation.weights.cross_validate_weights` picks the second member's weight. The result
is printed and written to ``<lake>/reports/fusion_weights/<run_id>.json``; put the chosen weights in
``models.fusions`` by hand (a person decides what becomes the default).

Run: ``python -m jobs.fusion_weights --env local --set lake.root=./lake_eval \
--manifest ../shared/datasets/lfw_dev/manifest.csv --identity-fixes lfw``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from facelink.config import Config, ConfigError
from facelink.evaluation.dataset import SET_COLUMN, load_fixes, read_labelled_set, write_ingest_manifest
from facelink.evaluation.embeddings import Variant, extract_variants
from facelink.evaluation.weights import cross_validate_weights
from facelink.ingest.photos import ingest_photos
from facelink.lake.fs import is_local, join, lake_fs, lake_uri, local_path, local_staging
from facelink.lake.runs import RunRecorder, new_run_id
from facelink.registry import recogniser, recogniser_id

log = logging.getLogger(__name__)
JOB = "fusion_weights"


def run(spark: SparkSession, cfg: Config, manifest: str, identity_fixes: str | None = None, fmr: float = 1e-4,
        folds: int = 5, run_id: str | None = None) -> dict[str, Any]:
    """Cross-validate the configured fusion's weights on the set of ``manifest``; return the result.

    Raises:
        ConfigError: The configured recogniser is not a fusion of two models.
    """
    rec = recogniser(cfg)
    if len(rec.members) != 2:
        raise ConfigError(f"models.recogniser: {rec.name!r} is not a fusion of two models")
    run_id = run_id or new_run_id(JOB)
    labelled = read_labelled_set(manifest, None, None, load_fixes(identity_fixes))
    flips = rec.member_flips(cfg.extract.flip_tta)
    variants = [Variant(m.name, f, cfg.extract.detect_size) for m, f in zip(rec.members, flips, strict=True)]
    report_dir = lake_uri(cfg, "reports", JOB)
    local_reports = local_path(report_dir) if is_local(report_dir) else None
    with RunRecorder(spark, cfg, JOB, run_id, model_id=recogniser_id(cfg)) as rec_run, \
            contextlib.ExitStack() as stack:
        # The ingest manifest: beside the report on a local lake, in a local temporary folder otherwise.
        work = local_reports / f"{run_id}-work" if local_reports is not None else \
            stack.enter_context(local_staging("facelink-fusion-"))
        work.mkdir(parents=True, exist_ok=True)
        eval_cfg = cfg.with_overrides([f"ingest.partition_column={SET_COLUMN}"])
        ingest_photos(spark, eval_cfg, str(write_ingest_manifest(labelled, work / "ingest_manifest.csv")),
                   role="gallery", run_id=f"{run_id}-ingest")
        rec_run.read("photos")
        store = extract_variants(spark, cfg, labelled, variants, f"{cfg.lake_root.rstrip('/')}/evaluation/embeddings")
        choice = cross_validate_weights(store.get(variants[0]), store.get(variants[1]), labelled.identities,
                                        fmr=fmr, folds=folds)
        result = {"run_id": run_id, "manifest": manifest, "identity_fixes": identity_fixes,
                  "members": [v.label for v in variants], "weight_of": variants[1].label,
                  "configured_weights": list(rec.weights), **choice.as_dict()}
        lake_fs(cfg).write_text(join(report_dir, f"{run_id}.json"), json.dumps(result, indent=1))
        rec_run.counts.update(photos=len(labelled))
        rec_run.detail.update(manifest=manifest, chosen_weight=choice.weight)
    return result


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--manifest", required=True, help="labelled set manifest.csv (path, identity)")
    parser.add_argument("--identity-fixes", default=None, help="label fixes: 'lfw' or a key,identity CSV")
    parser.add_argument("--fmr", type=float, default=1e-4, help="false-match rate at which FNMR is compared")
    parser.add_argument("--folds", type=int, default=5, help="identity-disjoint folds")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        result = run(spark, cfg, args.manifest, args.identity_fixes, args.fmr, args.folds, args.run_id)
        print(json.dumps(result, indent=1))

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
