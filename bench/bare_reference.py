"""Bare single-process reference: one photo at a time, one thread, and LFW pairs accuracy.

The reference loop (``cv2.FaceDetectorYN`` on a 320 letterbox, five-point alignment, one recogniser) is
the baseline a distributed run is compared with, for speed (photos/s, detect/embed split) and for
accuracy (the standard 5-fold LFW pairs protocol, threshold chosen on 4 folds and tested on the 5th).
With ``--pipeline`` the same pairs are also scored through `udfs.pipeline.FacePipeline.process_batch`.

Usage::

    python -m bench.bare_reference --data-dir ../shared/datasets --models-dir ../shared/models --pipeline
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from udfs.align import ALIGN_METHODS, AlignMethod, align
from udfs.detect import FaceDetector
from udfs.embed import FaceEmbedder
from udfs.models import ModelSpec, resolve_model, verify_digest
from udfs.pipeline import FacePipeline, select_primary

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
RECOGNISERS = ("mobilefacenet_128d", "dlib_resnet34_128d")
STAGES = ("decode", "detect", "align", "embed")


def registry_spec(name: str) -> ModelSpec:
    """The ``models.registry`` entry ``name`` of the local configuration (the one registry of digests)."""
    from facelink.config import load_config
    from facelink.registry import model_spec

    return model_spec(load_config("local"), name)


@dataclass(frozen=True)
class Pair:
    """One LFW protocol pair: fold number, two photo paths relative to the set root, same person or not."""

    fold: int
    path_a: str
    path_b: str
    same: bool


@dataclass
class BareRun:
    """Outcome of `run_bare_reference`: embeddings by photo path (None = no face) and timings."""

    embeddings: dict[str, np.ndarray | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def photos(self) -> int:
        """Photos processed."""
        return len(self.embeddings)

    def summary(self) -> dict[str, float]:
        """photos/s and milliseconds per photo for each stage and in total."""
        total = sum(self.seconds.values())
        out = {f"{k}_ms": 1000.0 * v / max(self.photos, 1) for k, v in self.seconds.items()}
        out["total_ms"] = 1000.0 * total / max(self.photos, 1)
        out["photos_per_s"] = self.photos / total if total else 0.0
        out["no_face"] = float(sum(v is None for v in self.embeddings.values()))
        return out


def _photo_path(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}.jpg"


def load_pairs(pairs_path: Path) -> list[Pair]:
    """Parse LFW ``pairs.txt`` (first line ``folds per_fold``; same lines then different lines per fold)."""
    lines = pairs_path.read_text().split("\n")
    folds, per_fold = (int(x) for x in lines[0].split())
    pairs: list[Pair] = []
    for i, line in enumerate(lines[1 : 1 + 2 * folds * per_fold]):
        parts = line.split()
        same = len(parts) == 3
        name_b, number_b = (parts[0], parts[2]) if same else (parts[2], parts[3])
        path_a = _photo_path(parts[0], int(parts[1]))
        pairs.append(Pair(i // (2 * per_fold), path_a, _photo_path(name_b, int(number_b)), same))
    return pairs


def unique_photos(pairs: Iterable[Pair]) -> list[str]:
    """Sorted unique photo paths used by ``pairs``."""
    return sorted({p for pair in pairs for p in (pair.path_a, pair.path_b)})


def subsample_pairs(pairs: Sequence[Pair], per_fold: int) -> list[Pair]:
    """The first ``per_fold`` same-person and ``per_fold`` different-person pairs of every fold."""
    kept: list[Pair] = []
    counts: dict[tuple[int, bool], int] = {}
    for pair in pairs:
        key = (pair.fold, pair.same)
        if counts.get(key, 0) < per_fold:
            counts[key] = counts.get(key, 0) + 1
            kept.append(pair)
    return kept


def _letterbox(bgr: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    height, width = bgr.shape[:2]
    scale = min(size / width, size / height)
    resized = cv2.resize(bgr, (min(size, round(width * scale)), min(size, round(height * scale))))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas, scale


def run_bare_reference(
    photo_paths: Sequence[str],
    data_root: Path,
    models_dir: Path,
    recogniser: str,
    input_size: int = 320,
    align_method: AlignMethod = "lstsq",
) -> BareRun:
    """Embed each photo's primary face in a plain loop: decode, YuNet (cv2), align, embed; one thread.

    Args:
        photo_paths: Photo paths relative to ``data_root``.
        data_root: Root of the photo set (e.g. ``.../lfw_dev``).
        models_dir: Directory with the model files.
        recogniser: Registry name of the recogniser.
        input_size: Letterbox side for the detector.
        align_method: Similarity fit (see `udfs.align`).

    Returns:
        Embeddings (None where no face was found) and per-stage seconds; file reading is not timed.
    """
    detector_spec = registry_spec("yunet_2023mar")
    detector_path = resolve_model(detector_spec, models_dir)
    verify_digest(detector_spec, detector_path)
    detector = cv2.FaceDetectorYN.create(str(detector_path), "", (input_size, input_size), 0.6, 0.3, 5000)
    embedder = FaceEmbedder(registry_spec(recogniser), models_dir, threads=1, batch_size=1, flip_tta=False)
    run = BareRun()
    for rel in photo_paths:
        data = (data_root / rel).read_bytes()
        t0 = time.perf_counter()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        run.seconds["decode"] += t1 - t0
        if bgr is None:
            run.embeddings[rel] = None
            continue
        canvas, scale = _letterbox(bgr, input_size)
        _, faces = detector.detect(canvas)
        t2 = time.perf_counter()
        run.seconds["detect"] += t2 - t1
        if faces is None or len(faces) == 0:
            run.embeddings[rel] = None
            continue
        faces = faces.astype(np.float64) / np.r_[np.full(14, scale), 1.0]
        primary = select_primary(faces[:, :4], faces[:, 14], bgr.shape[1], bgr.shape[0])
        crop = align(bgr, faces[primary, 4:14].reshape(5, 2), embedder.template, align_method)
        t3 = time.perf_counter()
        run.embeddings[rel] = embedder.embed(crop[None])[0]
        run.seconds["align"] += t3 - t2
        run.seconds["embed"] += time.perf_counter() - t3
    return run


def pair_scores(pairs: Sequence[Pair], embeddings: Mapping[str, np.ndarray | None]) -> np.ndarray:
    """Cosine similarity per pair; -1 where either photo has no embedding (counted as a non-match)."""
    scores = np.full(len(pairs), -1.0)
    for i, pair in enumerate(pairs):
        a, b = embeddings.get(pair.path_a), embeddings.get(pair.path_b)
        if a is not None and b is not None:
            scores[i] = float(np.dot(a, b))
    return scores


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Threshold maximising accuracy of ``score >= threshold`` on (scores, same); midpoint between scores."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], same[order]
    impostors_below = np.concatenate([[0], np.cumsum(~y)])
    genuine_from = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    i = int(np.argmax(impostors_below + genuine_from))
    if i == 0:
        return float(s[0]) - 1e-6
    if i == len(s):
        return float(s[-1]) + 1e-6
    return float(s[i - 1] + s[i]) / 2


def lfw_accuracy(pairs: Sequence[Pair], embeddings: Mapping[str, np.ndarray | None]) -> dict[str, float]:
    """LFW k-fold accuracy: for each fold, the threshold is chosen on the other folds and tested on it.

    Args:
        pairs: Protocol pairs with their folds.
        embeddings: L2-normalised embedding per photo path (None = no face).

    Returns:
        ``accuracy`` (mean over folds), ``accuracy_std``, ``threshold`` (mean), ``tar_at_far_1e-2`` (over
        all pairs) and ``pairs_missing`` (pairs with a photo without face).
    """
    if len({p.fold for p in pairs}) < 2:
        raise ValueError("lfw_accuracy needs pairs from at least two folds")
    scores = pair_scores(pairs, embeddings)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = folds == fold
        threshold = best_threshold(scores[~test], same[~test])
        accuracies.append(float(np.mean((scores[test] >= threshold) == same[test])))
        thresholds.append(threshold)
    impostor_cut = float(np.quantile(scores[~same], 0.99, method="higher"))
    return {
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "threshold": float(np.mean(thresholds)),
        "tar_at_far_1e-2": float(np.mean(scores[same] > impostor_cut)),
        "pairs_missing": float(np.sum(scores == -1.0)),
    }


def run_pipeline(
    photo_paths: Sequence[str],
    data_root: Path,
    models_dir: Path,
    batch: int = 64,
    align_method: AlignMethod = "lstsq",
) -> tuple[dict[str, dict[str, np.ndarray | None]], dict[str, float]]:
    """Embed photos through `FacePipeline.process_batch` with both recognisers (primary face per photo)."""
    detector = FaceDetector(registry_spec("yunet_dynamic"), models_dir, input_size=320)
    embedders = {name: FaceEmbedder(registry_spec(name), models_dir, batch_size=64, flip_tta=False)
                 for name in RECOGNISERS}
    pipeline = FacePipeline(detector, embedders, align_method=align_method)
    out: dict[str, dict[str, np.ndarray | None]] = {name: {} for name in RECOGNISERS}
    quality_ok = 0
    for start in range(0, len(photo_paths), batch):
        chunk = photo_paths[start : start + batch]
        results = pipeline.process_batch([(data_root / p).read_bytes() for p in chunk])
        for rel, result in zip(chunk, results, strict=True):
            primary = result.primary
            quality_ok += bool(primary and primary["quality_ok"])
            for name in RECOGNISERS:
                out[name][rel] = None if primary is None else primary["embeddings"][name]
    timings = pipeline.timings.as_dict()
    timings["primary_quality_ok_rate"] = quality_ok / max(len(photo_paths), 1)
    return out, timings


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "datasets")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT.parent / "shared" / "models")
    parser.add_argument("--recognisers", nargs="+", default=list(RECOGNISERS), choices=RECOGNISERS)
    parser.add_argument(
        "--per-fold", type=int, default=0, help="use N same and N different pairs per fold (0 = all)"
    )
    parser.add_argument("--align-method", default="lstsq", choices=ALIGN_METHODS)
    parser.add_argument("--pipeline", action="store_true", help="also score the pairs through FacePipeline")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bare_reference.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reference on lfw_dev pairs, print a table and write the numbers to ``--out``."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cv2.setNumThreads(1)
    root = args.data_dir / "lfw_dev"
    pairs = load_pairs(root / "pairs.txt")
    if args.per_fold:
        pairs = subsample_pairs(pairs, args.per_fold)
    photos = unique_photos(pairs)
    logger.info("%d pairs over %d photos", len(pairs), len(photos))
    report: dict[str, dict[str, float]] = {}
    for name in args.recognisers:
        run = run_bare_reference(photos, root, args.models_dir, name, align_method=args.align_method)
        report[f"bare/{name}"] = {**lfw_accuracy(pairs, run.embeddings), **run.summary()}
    if args.pipeline:
        embeddings, timings = run_pipeline(photos, root, args.models_dir, align_method=args.align_method)
        for name in RECOGNISERS:
            report[f"pipeline/{name}"] = lfw_accuracy(pairs, embeddings[name])
        report["pipeline/timings"] = timings
    header = ("accuracy", "std", "TAR@1e-2", "ms/photo", "detect", "embed")
    print(f"{'run':36s} " + " ".join(f"{h:>9s}" for h in header))
    for key, row in report.items():
        if "accuracy" in row:
            print(
                f"{key:36s} {row['accuracy']:9.4f} {row['accuracy_std']:9.4f} {row['tar_at_far_1e-2']:9.3f} "
                f"{row.get('total_ms', float('nan')):9.2f} {row.get('detect_ms', float('nan')):9.2f} "
                f"{row.get('embed_ms', float('nan')):9.2f}"
            )
    if args.pipeline:
        t = report["pipeline/timings"]
        print(
            f"pipeline (both recognisers): {t['total_ms_per_photo']:.2f} ms/photo; detect "
            f"{t['detect_ms_per_photo']:.2f}, align {t['align_ms_per_photo']:.2f}, "
            f"embed {t['embed_ms_per_photo']:.2f}; "
            f"primary face quality_ok {t['primary_quality_ok_rate']:.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, sort_keys=True))
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
