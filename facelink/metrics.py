"""Accuracy metrics for the evaluation job, in the NIST FRTE vocabulary.

Verification (1:1) works on comparison scores with a same-identity label: FMR / FAR is the fraction
of non-mate comparisons accepted (score >= threshold), FNMR the fraction of mate comparisons
rejected, TAR = 1 - FNMR. Identification (1:N) works per probe: a non-mated probe is a false
positive when its top candidate scores >= t (FPIR); a mated probe is a miss when its true mate is not
returned at rank <= R with score >= t (FNIR). All functions are pure NumPy; the plot helpers write
PNG files through Matplotlib's Agg canvas without touching pyplot's global state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
# A few ulps of slack so that target * n landing a hair under an integer (0.29 * 100) still counts it.
_COUNT_EPS = 1e-9


def best_threshold(scores: ArrayLike, is_same: ArrayLike) -> tuple[float, float]:
    """Return the accuracy-maximising threshold (same when score >= it) and its accuracy.

    Among thresholds of equal accuracy the middle one is taken; a threshold between two observed
    scores is their midpoint.
    """
    s, y = _pairs(scores, is_same, need_both=False)
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    n = s.size
    # Threshold at split j predicts "same" for sorted positions >= j.
    diff_below = np.concatenate(([0], np.cumsum(~y)))
    same_below = np.concatenate(([0], np.cumsum(y)))
    correct = diff_below + (same_below[-1] - same_below)
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = s[1:] > s[:-1]
    correct = np.where(valid, correct, -1)
    best = np.flatnonzero(correct == correct.max())
    j = int(best[best.size // 2])
    if j == 0:
        threshold = float(s[0])
    elif j == n:
        threshold = float(np.nextafter(s[-1], np.inf))
    else:
        threshold = float(0.5 * (s[j - 1] + s[j]))
    return threshold, float(correct[j] / n)


def kfold_verification(scores: ArrayLike, is_same: ArrayLike, folds: ArrayLike) -> dict[str, Any]:
    """LFW-style k-fold verification accuracy.

    For each fold the threshold is chosen on the other folds (:func:`best_threshold`) and the
    accuracy measured on the fold itself.

    Args:
        scores: Comparison scores, shape [n].
        is_same: True for mate comparisons, shape [n].
        folds: Fold id of each comparison, shape [n], at least two distinct ids.

    Returns:
        ``accuracy_mean``, ``accuracy_std`` (population std over folds, as LFW reports), and per fold
        lists ``folds``, ``thresholds``, ``accuracies``.

    Raises:
        ValueError: Shapes differ, fewer than two folds, or a training split lacks a class.
    """
    s, y = _pairs(scores, is_same, need_both=True)
    f = np.asarray(folds)
    if f.shape != s.shape:
        raise ValueError(f"folds must have shape {s.shape}, got {f.shape}")
    fold_ids = np.unique(f)
    if fold_ids.size < 2:
        raise ValueError(f"need at least 2 folds, got {fold_ids.size}")
    thresholds, accuracies = [], []
    for fold in fold_ids:
        test = f == fold
        train_y = y[~test]
        if train_y.all() or not train_y.any():
            raise ValueError(f"training split for fold {fold!r} has only one class")
        threshold, _ = best_threshold(s[~test], train_y)
        thresholds.append(threshold)
        accuracies.append(float(np.mean((s[test] >= threshold) == y[test])))
    return {
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "folds": fold_ids.tolist(),
        "thresholds": thresholds,
        "accuracies": accuracies,
    }


def roc(scores: ArrayLike, is_same: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return the ROC as ``(far, tar, thresholds)``, thresholds descending from +inf.

    ``far[i]`` and ``tar[i]`` are the fractions of non-mate and mate scores >= ``thresholds[i]``; one
    point per distinct score, plus (0, 0) at +inf.
    """
    s, y = _pairs(scores, is_same, need_both=True)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last_of_value = np.flatnonzero(np.append(s[1:] < s[:-1], True))
    tp = np.cumsum(y)[last_of_value]
    fp = np.cumsum(~y)[last_of_value]
    far = np.concatenate(([0.0], fp / fp[-1]))
    tar = np.concatenate(([0.0], tp / tp[-1]))
    return far, tar, np.concatenate(([np.inf], s[last_of_value]))


def det_curve(scores: ArrayLike, is_same: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Return the DET curve as ``(fmr, fnmr)``, ordered by descending threshold (see :func:`roc`)."""
    far, tar, _ = roc(scores, is_same)
    return far, 1.0 - tar


def threshold_at_fmr(nonmate_scores: ArrayLike, target: float) -> float:
    """Return the lowest threshold t with ``mean(nonmate_scores >= t) <= target``.

    Args:
        nonmate_scores: Non-mate comparison scores (or non-mated probes' top scores), shape [n].
        target: Rate in (0, 1].

    Raises:
        ValueError: No scores, non-finite scores, or ``target`` not in (0, 1].
    """
    return _threshold_at_rate(_finite_1d(nonmate_scores, "nonmate_scores"), target)


def tar_at_far(
    scores: ArrayLike, is_same: ArrayLike, far_targets: Sequence[float] = (1e-2, 1e-3, 1e-4)
) -> dict[float, dict[str, float]]:
    """Return TAR at each FAR target: ``{target: {"threshold", "tar", "far"}}``.

    The threshold is the lowest one whose measured FAR is at most the target, so ``far`` may fall
    below it (ties, or a target finer than 1 / number of non-mates).
    """
    s, y = _pairs(scores, is_same, need_both=True)
    nonmate, mate = s[~y], s[y]
    out: dict[float, dict[str, float]] = {}
    for target in far_targets:
        t = threshold_at_fmr(nonmate, target)
        out[target] = {
            "threshold": t,
            "tar": float(np.mean(mate >= t)),
            "far": float(np.mean(nonmate >= t)),
        }
    return out


def identification_rates(
    mate_scores: ArrayLike,
    mate_ranks: ArrayLike,
    nonmate_top_scores: ArrayLike,
    thresholds: ArrayLike,
    max_rank: float = np.inf,
) -> dict[str, FloatArray]:
    """Return FPIR and FNIR at each threshold.

    Args:
        mate_scores: Per mated probe, the score of its true mate in the candidate list, shape [M]
            (ignored, may be NaN, where the mate is absent).
        mate_ranks: Per mated probe, the 1-based rank of its mate, or inf if not in the list, shape [M].
        nonmate_top_scores: Per non-mated probe, its top candidate score (-inf for an empty list),
            shape [P].
        thresholds: Thresholds t, shape [T].
        max_rank: R: a mate counts as found only at rank <= R (inf: anywhere in the list).

    Returns:
        ``thresholds``, ``fpir`` (fraction of non-mated probes with top score >= t) and ``fnir``
        (fraction of mated probes whose mate is not at rank <= R with score >= t), each shape [T].
    """
    hit_scores = _found_mate_scores(mate_scores, mate_ranks, max_rank)
    n_mated = np.asarray(mate_ranks).size
    nonmate = np.sort(_top_scores(nonmate_top_scores))
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    found = hit_scores.size - np.searchsorted(hit_scores, t, side="left")
    false_pos = nonmate.size - np.searchsorted(nonmate, t, side="left")
    return {"thresholds": t, "fpir": false_pos / nonmate.size, "fnir": 1.0 - found / n_mated}


def fnir_at_fpir(
    mate_scores: ArrayLike,
    mate_ranks: ArrayLike,
    nonmate_top_scores: ArrayLike,
    fpir_targets: Sequence[float] = (0.01, 0.003),
    max_rank: float = np.inf,
) -> dict[float, dict[str, float]]:
    """Return FNIR at each FPIR target: ``{target: {"threshold", "fpir", "fnir"}}``.

    The threshold is the lowest one whose measured FPIR on the non-mated probes is at most the
    target (:func:`threshold_at_fmr` on their top scores). Arguments as in :func:`identification_rates`.
    """
    nonmate = _top_scores(nonmate_top_scores)
    out: dict[float, dict[str, float]] = {}
    for target in fpir_targets:
        t = _threshold_at_rate(nonmate, target)
        rates = identification_rates(mate_scores, mate_ranks, nonmate, [t], max_rank)
        out[target] = {"threshold": t, "fpir": float(rates["fpir"][0]), "fnir": float(rates["fnir"][0])}
    return out


def rank_miss_rates(mate_ranks: ArrayLike, ranks: Sequence[int] = (1, 10)) -> dict[int, float]:
    """Return, per rank R, the fraction of mated probes whose mate is not at rank <= R (no threshold)."""
    r = _ranks(mate_ranks)
    return {int(rank): float(np.mean(r > rank)) for rank in ranks}


def bootstrap_ci(
    stat_fn: Callable[..., float],
    *arrays: ArrayLike,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Sequence[int] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``stat_fn(*arrays)``.

    Args:
        stat_fn: Statistic of the arrays, called with resampled arrays in the same order.
        *arrays: 1-D arrays of per-probe (or per-comparison) values.
        n_boot: Number of bootstrap replicates.
        alpha: 1 - confidence level.
        seed: Seed of the resampling generator.
        groups: Resampling group of each array: arrays in one group are resampled with the same indices
            (e.g. mated probes' scores and ranks), groups independently (mated vs non-mated probes).
            Default: every array on its own.

    Returns:
        ``(lo, hi)``, the alpha/2 and 1 - alpha/2 quantiles of the replicates.

    Raises:
        ValueError: No arrays, an empty array, lengths differ within a group, or a bad parameter.
    """
    data = [np.asarray(arr) for arr in arrays]
    labels = list(range(len(data))) if groups is None else list(groups)
    if not data or len(labels) != len(data):
        raise ValueError(
            f"need at least one array and one group label per array, got {len(data)} / {len(labels)}"
        )
    if n_boot < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"n_boot must be >= 1 and alpha in (0, 1), got {n_boot} and {alpha}")
    sizes: dict[int, int] = {}
    for label, arr in zip(labels, data, strict=True):
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"bootstrap arrays must be non-empty and 1-D, got shape {arr.shape}")
        if sizes.setdefault(label, arr.size) != arr.size:
            raise ValueError(f"arrays in group {label} differ in length ({sizes[label]} vs {arr.size})")
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_boot)
    for b in range(n_boot):
        index = {label: rng.integers(0, size, size) for label, size in sizes.items()}
        replicates[b] = stat_fn(*(arr[index[label]] for label, arr in zip(labels, data, strict=True)))
    lo, hi = np.quantile(replicates, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def per_group_rates(
    scores: ArrayLike, is_same: ArrayLike, group_labels: ArrayLike, threshold: float
) -> dict[str, Any]:
    """FMR and FNMR per demographic (or capture) group at one global threshold.

    Args:
        scores: Comparison scores, shape [n].
        is_same: True for mate comparisons, shape [n].
        group_labels: Group of each comparison, shape [n]; for non-mates, use the label both sides share
            (cross-group impostor pairs belong in no group, or in their own "a|b" label).
        threshold: Global threshold, e.g. :func:`threshold_at_fmr` on all non-mates.

    Returns:
        ``threshold``; ``groups``: label -> ``fmr``, ``fnmr``, ``n_nonmate``, ``n_mate`` (rates NaN where
        the group has no such comparisons); and for ``fmr`` and ``fnmr`` each the ``*_worst_group``,
        ``*_best_group`` and ``*_ratio`` (worst / best; inf if the best is 0 and the worst is not).
    """
    s, y = _pairs(scores, is_same, need_both=False)
    g = np.asarray(group_labels)
    if g.shape != s.shape:
        raise ValueError(f"group_labels must have shape {s.shape}, got {g.shape}")
    groups: dict[str, dict[str, float]] = {}
    for label in np.unique(g):
        in_group = g == label
        nonmate, mate = s[in_group & ~y], s[in_group & y]
        groups[str(label)] = {
            "fmr": float(np.mean(nonmate >= threshold)) if nonmate.size else math.nan,
            "fnmr": float(np.mean(mate < threshold)) if mate.size else math.nan,
            "n_nonmate": int(nonmate.size),
            "n_mate": int(mate.size),
        }
    result: dict[str, Any] = {"threshold": float(threshold), "groups": groups}
    for rate in ("fmr", "fnmr"):
        result.update(_worst_best(groups, rate))
    return result


def plot_det(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: str | Path, title: str = "DET") -> Path:
    """Write a DET plot (log FMR vs log FNMR), one line per ``name -> (fmr, fnmr)``, as PNG."""
    return _plot(curves, Path(path), title, ("FMR", "FNMR"), log_y=True)


def plot_roc(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], path: str | Path, title: str = "ROC") -> Path:
    """Write a ROC plot (log FAR vs TAR), one line per ``name -> (far, tar)``, as PNG."""
    return _plot(curves, Path(path), title, ("FAR", "TAR"), log_y=False)


def _plot(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: Path,
    title: str,
    labels: tuple[str, str],
    log_y: bool,
) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("curves must hold at least one curve")
    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = 0
    for name, (x, y) in curves.items():
        xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        keep = (xa > 0) & (ya > 0) if log_y else xa > 0
        ax.plot(xa[keep], ya[keep], label=name)
        drawn += int(keep.sum())
    if drawn:
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
    else:  # a small set separated without error has no point on log axes: say so rather than fail
        ax.text(0.5, 0.5, "no operating point with both rates > 0\n(no errors measured on this set)",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    logger.info("wrote %s plot to %s", title, path)
    return path


def _threshold_at_rate(negatives: FloatArray, target: float) -> float:
    """Lowest t with ``mean(negatives >= t) <= target``; ``negatives`` may hold -inf."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must be in (0, 1], got {target}")
    x = np.sort(negatives)[::-1]
    allowed = math.floor(target * x.size + _COUNT_EPS)
    if allowed >= x.size:
        return float(x[-1])
    if allowed == 0:
        logger.warning(
            "target rate %g is below 1/%d: the threshold only clears the largest score", target, x.size
        )
    return float(np.nextafter(x[allowed], np.inf))


def _worst_best(groups: Mapping[str, Mapping[str, float]], rate: str) -> dict[str, Any]:
    measured = {label: values[rate] for label, values in groups.items() if not math.isnan(values[rate])}
    if not measured:
        return {f"{rate}_worst_group": None, f"{rate}_best_group": None, f"{rate}_ratio": math.nan}
    worst = max(measured, key=lambda label: measured[label])
    best = min(measured, key=lambda label: measured[label])
    ratio = measured[worst] / measured[best] if measured[best] > 0 else math.inf if measured[worst] > 0 else 1.0
    return {f"{rate}_worst_group": worst, f"{rate}_best_group": best, f"{rate}_ratio": ratio}


def _pairs(scores: ArrayLike, is_same: ArrayLike, need_both: bool) -> tuple[FloatArray, BoolArray]:
    s = _finite_1d(scores, "scores")
    y = np.asarray(is_same)
    if y.shape != s.shape:
        raise ValueError(f"is_same must have shape {s.shape}, got {y.shape}")
    if y.dtype != np.bool_:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("is_same must be boolean (or 0/1)")
        y = y.astype(bool)
    if need_both and (y.all() or not y.any()):
        raise ValueError(f"need both mate and non-mate comparisons, got {int(y.sum())} mates of {y.size}")
    return s, y


def _finite_1d(values: ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has {int((~np.isfinite(arr)).sum())} non-finite values")
    return arr


def _ranks(mate_ranks: ArrayLike) -> FloatArray:
    r = np.asarray(mate_ranks, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"mate_ranks must be a non-empty 1-D array, got shape {r.shape}")
    if np.isnan(r).any() or (r < 1).any():
        raise ValueError("mate_ranks must be >= 1 (inf for a mate absent from the list), with no NaN")
    return r


def _found_mate_scores(mate_scores: ArrayLike, mate_ranks: ArrayLike, max_rank: float) -> FloatArray:
    """Return the sorted scores of mates found at rank <= max_rank."""
    r = _ranks(mate_ranks)
    s = np.asarray(mate_scores, dtype=np.float64)
    if s.shape != r.shape:
        raise ValueError(f"mate_scores must have shape {r.shape}, got {s.shape}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    found = np.isfinite(r) & (r <= max_rank)
    if not np.isfinite(s[np.isfinite(r)]).all():
        raise ValueError("mate_scores must be finite wherever the mate's rank is finite")
    return np.sort(s[found])


def _top_scores(nonmate_top_scores: ArrayLike) -> FloatArray:
    x = np.asarray(nonmate_top_scores, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"nonmate_top_scores must be a non-empty 1-D array, got shape {x.shape}")
    if np.isnan(x).any() or np.isposinf(x).any():
        raise ValueError("nonmate_top_scores must be finite or -inf (empty candidate list)")
    return x
