"""Fit the score -> false-match-rate map of a recogniser from labelled photos, and check it on held-back people.

The photos of lfw_dev (``paths.data_dir``) go through the real extraction (the same ``mapInPandas`` function
as ``jobs.extract``; nothing is written to the archive's tables) and every pair of primary faces is scored:
pairs of different people are non-mates, pairs of one person are mates. ``facelink.calibration`` fits
FMR(s) (empirical bulk, generalised-Pareto tail). Before the final fit on everyone, people are split into 5
identity-disjoint folds; each fold's observed FMR at the thresholds fitted on the other four for FMR 1e-2
and 1e-3 is recorded, so the artefact carries its own evidence. The artefact is versioned and stored under
``<lake>/calibration/``; matching and de-duplication read the latest one for their model id.

Run: ``python -m jobs.calibrate --env local [--limit 2000]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.calibration import Calibration, fit_calibration
from facelink.config import Config
from facelink.errors import InputError
from facelink.models import recogniser_id
from facelink.runs import RunRecorder, new_run_id
from jobs.extract import ExtractSettings, transform_extract

log = logging.getLogger(__name__)
JOB = "calibrate"
CHECK_FMRS = (1e-2, 1e-3)
N_FOLDS = 5
MAX_NONMATES_PER_FIT = 4_000_000


def calibration_dir(cfg: Config) -> Path:
    return Path(cfg.lake_root) / "calibration"


def calibration_path(cfg: Config, model_id: str) -> Path:
    """Where the latest calibration of ``model_id`` lives (``match.calibration_path`` overrides)."""
    if cfg.match.calibration_path:
        return Path(cfg.resolve(cfg.match.calibration_path))
    return calibration_dir(cfg) / f"{model_id.replace('@', '_')}.json"


def load_calibration(cfg: Config, model_id: str) -> Calibration:
    """The latest calibration for ``model_id``.

    Raises:
        InputError: none was fitted yet (run ``jobs.calibrate``), or it belongs to another model.
    """
    path = calibration_path(cfg, model_id)
    if not path.is_file():
        raise InputError(f"no calibration for {model_id} at {path}: run `python -m jobs.calibrate` first")
    cal = Calibration.load(path)
    if cal.model_id != model_id:
        raise InputError(f"{path} calibrates {cal.model_id}, not {model_id}")
    return cal


def select_photos(lfw_dir: Path, limit: int | None, seed: int) -> list[tuple[str, str]]:
    """(relative path, identity) of lfw_dev photos; with ``limit``, whole people drawn at random."""
    with (lfw_dir / "manifest.csv").open() as fh:
        rows = [(r["path"], r["identity"]) for r in csv.DictReader(fh)]
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


def embed_photos(spark: SparkSession, cfg: Config, lfw_dir: Path, photos: list[tuple[str, str]],
                 cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Primary-face embeddings and identity labels of ``photos`` (cached in ``cache``)."""
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        return data["embeddings"], data["labels"]
    settings = ExtractSettings.from_config(cfg)
    identity = {str(lfw_dir / p): ident for p, ident in photos}
    files = (
        spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(lfw_dir))
        .withColumn("rel", F.regexp_replace("path", r"^file:", ""))
    )
    wanted = spark.createDataFrame([(k,) for k in identity], "rel string")
    photos_df = files.join(wanted, "rel", how="inner").select(
        F.col("rel").alias("record_id"), F.sha2("content", 256).alias("photo_id"), F.lit("calibration").alias("role"),
        F.lit("all").alias("partition"), "content",
    )
    n_parts = max(2, len(identity) // cfg.extract.photos_per_partition)
    faces = transform_extract(photos_df, settings, n_parts, "calibration").filter("is_primary")
    rows = faces.select("record_id", "embedding").orderBy("record_id").collect()
    embeddings = np.array([r["embedding"] for r in rows], dtype=np.float32)
    labels = np.array([identity[r["record_id"]] for r in rows])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, embeddings=embeddings, labels=labels)
    return embeddings, labels


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


def run(spark: SparkSession, cfg: Config, limit: int | None = None, run_id: str | None = None,
        seed: int = 7, if_missing: bool = False) -> CalibrateResult | None:
    """Fit and store the calibration of the configured recogniser (``if_missing``: only when there is none)."""
    settings = ExtractSettings.from_config(cfg)
    model_id = settings.model_id
    run_id = run_id or new_run_id(JOB)
    lfw_dir = Path(cfg.resolve(cfg.paths.data_dir)) / "lfw_dev"
    with RunRecorder(spark, cfg, JOB, run_id, model_id=model_id) as rec:
        if if_missing and calibration_path(cfg, model_id).is_file():
            # Still a run of its own in runs/audit: every job run is recorded, including one that kept state.
            log.info("calibration of %s exists at %s: kept", model_id, calibration_path(cfg, model_id))
            rec.detail.update(kept=str(calibration_path(cfg, model_id)))
            return None
        if not (lfw_dir / "manifest.csv").is_file():
            raise InputError(f"no lfw_dev at {lfw_dir}: set paths.data_dir (see README: data)")
        photos = select_photos(lfw_dir, limit, seed)
        digest = hashlib.sha256(json.dumps([photos, settings.detect_size, settings.flip_tta,
                                            settings.align_method]).encode()).hexdigest()
        safe = model_id.replace("@", "_")
        cache = calibration_dir(cfg) / safe / f"embeddings-{digest[:16]}.npz"
        emb, labels = embed_photos(spark, cfg, lfw_dir, photos, cache)
        checks = cross_check(emb, labels, model_id, seed)
        mates, nonmates = pair_scores(emb, labels, np.random.default_rng(seed))
        cal = fit_calibration(nonmates, mates, model_id, f"lfw_dev {len(emb)} photos, data sha256 {digest}")
        versioned = calibration_dir(cfg) / safe / f"{cal.version}.json"
        cal.save(versioned)
        cal.save(calibration_path(cfg, model_id))
        (calibration_dir(cfg) / safe / f"{cal.version}.checks.json").write_text(json.dumps(checks, indent=1))
        worst = max(max(c["ratio"], 1 / max(c["ratio"], 1e-9)) for c in checks)
        rec.counts.update(photos=len(emb), mates=int(mates.size), nonmates=int(nonmates.size))
        rec.detail.update(version=cal.version, worst_heldout_ratio=round(worst, 3), data_sha256=digest)
        log.info("calibration %s of %s from %d photos; held-out FMR within %.2fx of target", cal.version,
                 model_id, len(emb), worst)
        return CalibrateResult(run_id, model_id, cal.version, str(versioned), len(emb), checks)


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    from facelink.cli import base_parser, run_job

    parser = base_parser(JOB, __doc__.splitlines()[0] if __doc__ else JOB)
    parser.add_argument("--limit", type=int, default=None, help="use about this many photos (whole people)")
    parser.add_argument("--if-missing", action="store_true", help="do nothing when a calibration exists")

    def job(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
        res = run(spark, cfg, args.limit, args.run_id, if_missing=args.if_missing)
        if res is None:
            print(f"calibrate: kept the existing calibration at {calibration_path(cfg, recogniser_id(cfg))}")
            return
        print(f"calibrate {res.run_id}: {res.model_id} version {res.version} from {res.photos} photos -> {res.path}")
        for c in res.checks:
            print(f"  fold {c['fold']} target FMR {c['target_fmr']:.0e}: observed {c['observed_fmr']:.2e} "
                  f"(x{c['ratio']:.2f}) at score {c['threshold']:.4f}")

    return run_job(JOB, job, parser, argv, spark)


if __name__ == "__main__":
    raise SystemExit(main())
