"""Fit the score -> error-rate maps of a recogniser from labelled photos, and check them on held-back people.

The labelled photos (lfw_dev under ``paths.data_dir`` by default, or an archive's own with ``--manifest``: a CSV
with ``path`` and ``identity`` columns, paths relative to its folder) go through the real extraction (the same
``mapInPandas`` function as ``jobs.extract``; nothing is written to the archive's tables). Label fixes
(:mod:`facelink.identity_fixes`; on lfw_dev the checked LFW fixes by default) are applied first, so a known
same-person pair filed under two names is not a non-mate. Then:

- every pair of primary faces is scored, and ``facelink.search.calibration`` fits FMR(s) (empirical bulk,
  generalised-Pareto tail) from the pairs of different people;
- every photo searches galleries of other people's photos at sizes up to the largest the data allows, and
  ``facelink.search.fpir`` fits the FPIR model from the top scores: what match and dedup turn band FPIRs into
  thresholds with.

Before the final fit on everyone, people are split into 5 identity-disjoint folds: each fold's observed FMR
at the thresholds fitted on the other four (FMR 1e-2 and 1e-3), and each fold's observed FPIR at every band
of ``match.bands`` and ``dedup.bands`` for galleries from 1,000 faces up, are recorded beside the artefact,
so it carries its own evidence. The artefact is versioned and stored under ``<lake>/calibration/``; matching
and de-duplication read the one in force for their model id.

An archive must run this on its own labelled photos before it trusts a threshold:
``python -m jobs.calibrate --env prod --manifest labelled.csv`` (see docs/accuracy.md).

Run: ``python -m jobs.calibrate --env local [--limit 2000] [--manifest CSV] [--identity-fixes lfw|none|CSV]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.errors import InputError
from facelink.extraction.settings import ExtractSettings
from facelink.extraction.udf import transform_extract
from facelink.identity_fixes import apply_fixes, load_fixes
from facelink.lake.fs import join, lake_fs
from facelink.lake.runs import RunRecorder, new_run_id
from facelink.rates import format_rate
from facelink.registry import recogniser_id
from facelink.search.calibration import (
    Calibration,
    band_levels,
    calibration_dir,
    calibration_path,
    fit_calibration,
    load_calibration,
)
from facelink.search.fpir import format_check_rows, heldout_fpir_check, measure_fpir_model

__all__ = ["calibration_dir", "calibration_path", "load_calibration", "main", "run"]

log = logging.getLogger(__name__)
JOB = "calibrate"
CHECK_FMRS = (1e-2, 1e-3)
N_FOLDS = 5
MAX_NONMATES_PER_FIT = 4_000_000


def select_photos(manifest: Path, limit: int | None, seed: int) -> list[tuple[str, str]]:
    """(path relative to the manifest's folder, identity) of its photos; with ``limit``, whole people at random.

    Raises:
        InputError: The manifest is missing, or lacks a ``path`` or ``identity`` column.
    """
    if not manifest.is_file():
        raise InputError(f"calibration manifest not found: {manifest}")
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "identity"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"calibration manifest {manifest} lacks columns {sorted(missing)} (needs path, identity)")
        rows = [(r["path"], r["identity"]) for r in reader if r["path"] and r["identity"]]
    if limit is None or limit >= len(rows):
        return rows
    by_id: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_id.setdefault(row[1], []).append(row)
    people = sorted(by_id)
    random.Random(seed).shuffle(people)
    chosen: list[tuple[str, str]] = []
    for person in people:
        if len(chosen) >= limit:
            break
        chosen.extend(by_id[person])
    return sorted(chosen)


def embed_photos(spark: SparkSession, cfg: Config, root: Path, photos: list[tuple[str, str]],
                 cache: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Primary-face embeddings of ``photos`` (paths relative to ``root``), cached in ``cache`` (a lake URI).

    Returns:
        (float32 [n, d] embeddings, the relative path of each, the manifest identity of each): photos without
        a face are left out.
    """
    lake = lake_fs(cfg)
    if lake.is_file(cache):
        with np.load(io.BytesIO(lake.read_bytes(cache)), allow_pickle=False) as data:
            return data["embeddings"], [str(p) for p in data["paths"]], data["labels"]
    settings = ExtractSettings.from_config(cfg)
    absolute = {str((root / p).resolve()): (p, ident) for p, ident in photos}
    files = (
        spark.read.format("binaryFile").load(sorted(absolute))
        .withColumn("rel", F.regexp_replace("path", r"^file:", ""))
    )
    photos_df = files.select(
        F.col("rel").alias("record_id"), F.sha2("content", 256).alias("photo_id"), F.lit("calibration").alias("role"),
        F.lit("all").alias("partition"), "content",
    )
    n_parts = max(2, len(absolute) // cfg.extract.photos_per_partition)
    faces = transform_extract(photos_df, settings, n_parts, "calibration").filter("is_primary")
    rows = faces.select("record_id", "embedding").orderBy("record_id").collect()
    embeddings = np.array([r["embedding"] for r in rows], dtype=np.float32)
    paths = [absolute[r["record_id"]][0] for r in rows]
    labels = np.array([absolute[r["record_id"]][1] for r in rows])
    with lake.open_output(cache) as out:
        np.savez(out, embeddings=embeddings, paths=np.array(paths), labels=labels)
    return embeddings, paths, labels


def pair_scores(emb: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """All mate scores and (up to a cap, seeded) all non-mate scores among ``emb``."""
    sims = emb @ emb.T
    iu = np.triu_indices(len(emb), k=1)
    # Integer codes, not the identity strings: indexing a '<U..' array by 24M pair indices would take GiBs.
    _, codes = np.unique(labels, return_inverse=True)
    same = codes[iu[0]] == codes[iu[1]]
    scores = sims[iu]
    nonmates = scores[~same]
    if nonmates.size > MAX_NONMATES_PER_FIT:
        nonmates = rng.choice(nonmates, MAX_NONMATES_PER_FIT, replace=False)
    return scores[same], nonmates


def cross_check(emb: np.ndarray, labels: np.ndarray, model_id: str, seed: int) -> list[dict[str, float]]:
    """Per held-out fold of people and target FMR: the observed FMR at the threshold fitted without them."""
    folds = np.array([int(hashlib.sha256(x.encode()).hexdigest(), 16) % N_FOLDS for x in labels])
    rng = np.random.default_rng(seed)
    out = []
    for fold in range(N_FOLDS):
        train, test = folds != fold, folds == fold
        mates, nonmates = pair_scores(emb[train], labels[train], rng)
        cal = fit_calibration(nonmates, mates, model_id, f"lfw_dev folds != {fold}", fitted_at="cross-check")
        _, test_non = pair_scores(emb[test], labels[test], rng)
        for target in CHECK_FMRS:
            threshold = cal.score_at_fmr(target)
            observed = float(np.mean(test_non >= threshold))
            out.append({"fold": fold, "target_fmr": target, "threshold": threshold, "observed_fmr": observed,
                        "ratio": observed / target, "n_nonmate": int(test_non.size)})
    return out


@dataclass(frozen=True)
class CalibrateResult:
    run_id: str
    model_id: str
    version: str
    path: str
    photos: int
    checks: list[dict[str, float]]
    fpir_check: dict[str, Any]
    calibration: Calibration


def _current(cfg: Config, model_id: str) -> bool:
    """A calibration with a measured FPIR model is in force for ``model_id``."""
    try:
        load_calibration(cfg, model_id)
    except (InputError, ValueError):
        return False
    return True


def run(spark: SparkSession, cfg: Config, limit: int | None = None, run_id: str | None = None,
        seed: int = 7, if_missing: bool = False, manifest: str | None = None,
        identity_fixes: str | None = None) -> CalibrateResult | None:
    """Fit, check and store the calibration of the configured recogniser.

    Args:
        spark: The session.
        cfg: Configuration.
        limit: Use about this many photos (whole people drawn at random).
        run_id: Run id.
        seed: Seed of samples, folds' galleries and repeats.
        if_missing: Keep a calibration in force that has an FPIR model (one without is refitted).
        manifest: A labelled CSV (``path``, ``identity``); default lfw_dev's manifest under ``paths.data_dir``.
        identity_fixes: ``lfw``, ``none`` or a ``key,identity`` CSV; default ``lfw`` on lfw_dev, none otherwise.
    """
    settings = ExtractSettings.from_config(cfg)
    model_id = settings.model_id
    run_id = run_id or new_run_id(JOB)
    source = Path(manifest) if manifest else Path(cfg.resolve(cfg.paths.data_dir)) / "lfw_dev" / "manifest.csv"
    fixes_spec = identity_fixes if identity_fixes is not None else (None if manifest else "lfw")
    with RunRecorder(spark, cfg, JOB, run_id, model_id=model_id) as rec:
        if if_missing and _current(cfg, model_id):
            # Still a run of its own in runs/audit: every job run is recorded, including one that kept state.
            log.info("calibration of %s exists at %s: kept", model_id, calibration_path(cfg, model_id))
            rec.detail.update(kept=str(calibration_path(cfg, model_id)))
            return None
        if not source.is_file():
            raise InputError(f"no labelled manifest at {source}: set paths.data_dir (see README: data) or --manifest")
        fixes = load_fixes(fixes_spec)
        photos = select_photos(source, limit, seed)
        digest = hashlib.sha256(json.dumps([photos, settings.detect_size, settings.flip_tta,
                                            settings.align_method, "paths"]).encode()).hexdigest()
        safe = model_id.replace("@", "_")
        cache = join(calibration_dir(cfg), safe, f"embeddings-{digest[:16]}.npz")
        emb, paths, raw_labels = embed_photos(spark, cfg, source.parent, photos, cache)
        labels = np.array(apply_fixes(paths, [str(v) for v in raw_labels], fixes))
        relabelled = int(np.sum(labels != raw_labels))
        checks = cross_check(emb, labels, model_id, seed)
        levels = band_levels(cfg)
        try:
            fpir_check = heldout_fpir_check(emb, labels, levels, folds=N_FOLDS, seed=seed)
        except ValueError as exc:
            log.warning("held-back FPIR check not possible: %s", exc)
            fpir_check = {"skipped": str(exc), "rows": [], "within_2x": False}
        mates, nonmates = pair_scores(emb, labels, np.random.default_rng(seed))
        description = (f"{source.parent.name} {len(emb)} photos of {len(set(labels))} people "
                       f"({relabelled} relabelled by fixes {fixes_spec or 'none'}), data sha256 {digest}")
        try:
            model = measure_fpir_model(emb, labels, description, seed)
        except ValueError as exc:
            raise InputError(f"cannot measure FPIR on {source}: {exc}") from exc
        cal = fit_calibration(nonmates, mates, model_id, description).with_fpir_model(model)
        lake = lake_fs(cfg)
        versioned = join(calibration_dir(cfg), safe, f"{cal.version}.json")
        cal.save(versioned, lake)
        cal.save(calibration_path(cfg, model_id), lake)
        lake.write_text(join(calibration_dir(cfg), safe, f"{cal.version}.checks.json"),
                        json.dumps({"fmr": checks, "fpir": fpir_check}, indent=1))
        worst = max(max(c["ratio"], 1 / max(c["ratio"], 1e-9)) for c in checks)
        worst_fpir = max((max(r["ratio"], 1 / max(r["ratio"], 1e-9)) for r in fpir_check["rows"]), default=float("nan"))
        rec.counts.update(photos=len(emb), mates=int(mates.size), nonmates=int(nonmates.size),
                          relabelled=relabelled)
        rec.detail.update(version=cal.version, worst_heldout_ratio=round(worst, 3), data_sha256=digest,
                          manifest=str(source), identity_fixes=fixes_spec, fmr_floor=cal.fmr_floor,
                          fpir_floor=model.floor, fpir_model=model.describe(model.n_max, levels),
                          worst_heldout_fpir_ratio=round(worst_fpir, 3) if np.isfinite(worst_fpir) else None,
                          heldout_fpir_within_2x=fpir_check["within_2x"])
        log.info("calibration %s of %s from %d photos; held-out FMR within %.2fx, FPIR within %.2fx of target; "
                 "FPIR measured down to %s over galleries up to %d faces", cal.version, model_id, len(emb), worst,
                 worst_fpir, format_rate(model.floor, 0.0), model.n_max)
        return CalibrateResult(run_id, model_id, cal.version, str(versioned), len(emb), checks, fpir_check, cal)


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--limit", type=int, default=None, help="use about this many photos (whole people)")
    parser.add_argument("--if-missing", action="store_true",
                        help="do nothing when a calibration with an FPIR model exists")
    parser.add_argument("--manifest", default=None,
                        help="an archive's labelled photos: CSV with path (relative to its folder) and identity")
    parser.add_argument("--identity-fixes", default=None,
                        help="label fixes: 'lfw', 'none' or a key,identity CSV (default: lfw on lfw_dev)")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        res = run(spark, cfg, args.limit, args.run_id, if_missing=args.if_missing, manifest=args.manifest,
                  identity_fixes=args.identity_fixes)
        if res is None:
            print(f"calibrate: kept the existing calibration at {calibration_path(cfg, recogniser_id(cfg))}")
            return
        cal = res.calibration
        model = cal.fpir_model
        assert model is not None
        print(f"calibrate {res.run_id}: {res.model_id} version {res.version} from {res.photos} photos -> {res.path}")
        print(f"  FMR measured down to {format_rate(cal.fmr_floor, 0.0)}; FPIR measured down to "
              f"{format_rate(model.floor, 0.0)} over galleries of {model.sizes[0]:,} to {model.n_max:,} faces "
              f"({model.searches:,} searches); larger galleries are extrapolated")
        for c in res.checks:
            print(f"  fold {c['fold']} target FMR {c['target_fmr']:.0e}: observed {c['observed_fmr']:.2g} "
                  f"(x{c['ratio']:.2f}) at score {c['threshold']:.4f}")
        print("  held-back FPIR (identity-disjoint folds, pooled):")
        if "skipped" in res.fpir_check:
            print(f"    not measured: {res.fpir_check['skipped']}")
        for line in format_check_rows(res.fpir_check):
            print(line)

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
