"""Evaluation protocols as pure NumPy over score arrays: 1:1 verification, 1:N identification, duplicate
recall, per-group rates.

Conventions: a comparison that cannot be made (no face in a photo) is NaN in a score matrix. In
verification it counts as a rejection (scored below every real score); in 1:N a mated probe without a
face, or whose mate has none, is a miss, and a non-mated probe without a face returns no candidates.
Every confidence interval is a seeded percentile bootstrap (:func:`facelink.metrics.bootstrap_ci`) that
resamples mated and non-mated probes (or mate and non-mate comparisons) independently and re-derives the
threshold inside each replicate, so the interval covers the threshold's own noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facelink.metrics import (
    bootstrap_ci,
    det_curve,
    fnir_at_fpir,
    identification_rates,
    kfold_verification,
    per_group_rates,
    rank_miss_rates,
    roc,
    tar_at_far,
    threshold_at_fmr,
)

#: Stand-in for "no candidate" (-inf) where a function needs finite values; below any real score.
NO_SCORE = -1e12


@dataclass(frozen=True)
class BootstrapSpec:
    """How confidence intervals are drawn."""

    n_boot: int = 1000
    alpha: float = 0.05
    seed: int = 0


def fill_failures(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN scores (failed comparisons) by a score below every real one; return it and the count."""
    s = np.asarray(scores, dtype=np.float64)
    bad = np.isnan(s)
    if not bad.any():
        return s, 0
    floor = (np.nanmin(s) if (~bad).any() else 0.0) - 1.0
    return np.where(bad, floor, s), int(bad.sum())


def nonmate_threshold(nonmate_top: np.ndarray, target: float) -> float:
    """Lowest score t with ``mean(nonmate_top >= t) <= target`` (-inf tops allowed)."""
    return threshold_at_fmr(np.where(np.isfinite(nonmate_top), nonmate_top, NO_SCORE), target)


# --------------------------------------------------------------------------------------------- 1:1


def verification_metrics(
    scores: np.ndarray, is_same: np.ndarray, folds: np.ndarray, far_targets: Sequence[float], boot: BootstrapSpec,
) -> dict[str, Any]:
    """k-fold accuracy, TAR at FAR targets (with CIs) and the ROC / DET curves of 1:1 comparisons.

    Args:
        scores: float [n] (NaN = the comparison failed: no face).
        is_same: bool [n].
        folds: fold id [n].
        far_targets: FAR operating points.
        boot: Bootstrap settings.
    """
    s, failures = fill_failures(scores)
    y = np.asarray(is_same, dtype=bool)
    kfold = kfold_verification(s, y, folds)
    thr = dict(zip(kfold["folds"], kfold["thresholds"], strict=True))
    correct = (s >= np.array([thr[f] for f in folds])) == y
    acc_ci = bootstrap_ci(np.mean, correct.astype(np.float64), n_boot=boot.n_boot, alpha=boot.alpha, seed=boot.seed)
    tars = tar_at_far(s, y, far_targets)
    out: dict[str, Any] = {
        "n": int(s.size), "n_mate": int(y.sum()), "n_nonmate": int((~y).sum()), "failures": failures,
        "accuracy": kfold["accuracy_mean"], "accuracy_std": kfold["accuracy_std"], "accuracy_ci": acc_ci,
        "fold_thresholds": kfold["thresholds"], "tar_at_far": {},
    }
    mate, nonmate = s[y], s[~y]
    for target, got in tars.items():

        def stat(m: np.ndarray, nm: np.ndarray, t: float = target) -> float:
            return float(np.mean(m >= threshold_at_fmr(nm, t)))

        ci = bootstrap_ci(stat, mate, nonmate, groups=[0, 1], n_boot=boot.n_boot, alpha=boot.alpha, seed=boot.seed)
        out["tar_at_far"][target] = {**got, "ci": ci}
    far, tar, _ = roc(s, y)
    fmr, fnmr = det_curve(s, y)
    out["curves"] = {"roc": (far, tar), "det": (fmr, fnmr)}
    return out


# --------------------------------------------------------------------------------------------- 1:N


@dataclass(frozen=True)
class SearchOutcome:
    """What a 1:N search gave each probe.

    Attributes:
        mate_scores: float [M] score of each mated probe's true mate (NaN where absent).
        mate_ranks: float [M] 1-based rank of the mate among all records (inf where absent).
        nonmate_top: float [U] each non-mated probe's best score (-inf without candidates).
    """

    mate_scores: np.ndarray
    mate_ranks: np.ndarray
    nonmate_top: np.ndarray


def ranks_of(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score and 1-based rank of entry (rows[i], cols[i]) within its row; ties go to the lower column.

    Returns:
        (scores [n], ranks [n]); NaN score and inf rank where the entry is NaN.
    """
    s = np.where(np.isnan(scores[rows]), -np.inf, scores[rows])
    target = s[np.arange(len(rows)), cols]
    higher = (s > target[:, None]).sum(axis=1)
    ties = ((s == target[:, None]) & (np.arange(s.shape[1])[None, :] < cols[:, None])).sum(axis=1)
    found = np.isfinite(target)
    return np.where(found, target, np.nan), np.where(found, 1.0 + higher + ties, np.inf)


def search_outcomes(scores: np.ndarray, mates: Sequence[Sequence[int] | np.ndarray]) -> SearchOutcome:
    """Mate ranks and scores of mated probes and top scores of non-mated ones.

    Args:
        scores: float [Q, G] probe-vs-record scores (NaN where a side has no face).
        mates: Per probe, its mates' columns (empty for a non-mated probe). With several mates (a person
            enrolled twice) the best-scoring one counts, as in NIST's "any mate" rule.
    """
    mated = np.array([i for i, m in enumerate(mates) if len(m)], dtype=np.int64)
    filled = np.where(np.isnan(scores), -np.inf, scores)
    best = np.array([int(np.asarray(mates[i])[np.argmax(filled[i, np.asarray(mates[i])])]) for i in mated],
                    dtype=np.int64)
    m_scores, m_ranks = ranks_of(scores, mated, best) if len(mated) else (np.zeros(0), np.zeros(0))
    unmated = filled[[i for i, m in enumerate(mates) if not len(m)]]
    tops = unmated.max(axis=1) if unmated.size else np.zeros(0)
    return SearchOutcome(m_scores, m_ranks, tops)


def gallery_nonmate_tops(gallery_scores: np.ndarray, identity: np.ndarray) -> np.ndarray:
    """Top scores of the gallery's leave-one-out non-mated searches.

    Each gallery record whose identity has no other gallery record searches the rest of the gallery: it
    has no mate there, so its best score is a non-mated search's top score (NIST FRTE's unmated searches
    are made the same way from enrolled people when the probe set is small).

    Args:
        gallery_scores: float [G, G] record-vs-record scores, NaN on the diagonal.
        identity: int [G] identity code of each record.

    Returns:
        float [L] the best score of each such record (-inf when it has no scores).
    """
    codes = np.asarray(identity)
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    alone = np.flatnonzero(counts[inverse] == 1)
    rows = gallery_scores[alone]
    return np.where(np.isnan(rows), -np.inf, rows).max(axis=1) if rows.size else np.zeros(0)


def identification_metrics(
    outcome: SearchOutcome, fpir_targets: Sequence[float], ranks: Sequence[int], k: int, boot: BootstrapSpec,
) -> dict[str, Any]:
    """FNIR at FPIR targets (candidate list of length ``k``), rank-R miss rates, each with a CI; DET curve."""
    ms, mr, nt = outcome.mate_scores, outcome.mate_ranks, outcome.nonmate_top
    out: dict[str, Any] = {"n_mated": int(mr.size), "n_nonmated": int(nt.size), "k": k, "fnir_at_fpir": {},
                           "rank_miss": {}}
    for target, got in fnir_at_fpir(ms, mr, nt, fpir_targets, max_rank=k).items():

        def stat(a: np.ndarray, r: np.ndarray, n: np.ndarray, t: float = target) -> float:
            return fnir_at_fpir(a, r, n, (t,), max_rank=k)[t]["fnir"]

        ci = bootstrap_ci(stat, ms, mr, nt, groups=[0, 0, 1], n_boot=boot.n_boot, alpha=boot.alpha, seed=boot.seed)
        out["fnir_at_fpir"][target] = {**got, "ci": ci, "misses": round(got["fnir"] * mr.size)}
    for rank, miss in rank_miss_rates(mr, ranks).items():

        def rstat(r: np.ndarray, rank: int = rank) -> float:
            return float(np.mean(r > rank))

        ci = bootstrap_ci(rstat, mr, n_boot=boot.n_boot, alpha=boot.alpha, seed=boot.seed)
        out["rank_miss"][rank] = {"value": miss, "ci": ci}
    finite = np.unique(nt[np.isfinite(nt)])
    thresholds = np.concatenate([finite, [np.inf]]) if finite.size else np.array([np.inf])
    rates = identification_rates(ms, mr, nt, thresholds, max_rank=k)
    out["curves"] = {"det": (rates["fpir"], rates["fnir"])}
    return out


def dedup_metrics(
    gallery_scores: np.ndarray, pairs: np.ndarray, nonmate_top: np.ndarray, fpir_targets: Sequence[float], k: int,
    boot: BootstrapSpec,
) -> dict[str, Any]:
    """Recall of planted duplicate pairs when each gallery record searches the rest of the gallery.

    A pair (a, b) is found when b is in a's top ``k`` with a score at or above the threshold, or a in b's;
    the threshold is the one the non-mated probes' top scores give at each FPIR target.

    Args:
        gallery_scores: float [G, G] record-vs-record scores, NaN on the diagonal (own record excluded).
        pairs: int [D, 2] the planted duplicate pairs' record positions.
        nonmate_top: float [U] non-mated probes' top scores (sets the thresholds).
        fpir_targets: FPIR operating points.
        k: Candidate list length.
        boot: Bootstrap settings.
    """
    a, b = pairs[:, 0], pairs[:, 1]
    s_ab, r_ab = ranks_of(gallery_scores, a, b)
    s_ba, r_ba = ranks_of(gallery_scores, b, a)
    best = np.maximum(np.where(r_ab <= k, s_ab, -np.inf), np.where(r_ba <= k, s_ba, -np.inf))
    out: dict[str, Any] = {"n_pairs": len(pairs), "k": k, "recall_at_fpir": {},
                           "best_scores": best, "rank1": float(np.mean((r_ab == 1) | (r_ba == 1)))}
    for target in fpir_targets:
        t = nonmate_threshold(nonmate_top, target)
        found = best >= t

        def stat(bs: np.ndarray, nt: np.ndarray, tt: float = target) -> float:
            return float(np.mean(bs >= nonmate_threshold(nt, tt)))

        ci = bootstrap_ci(stat, best, nonmate_top, groups=[0, 1], n_boot=boot.n_boot, alpha=boot.alpha,
                          seed=boot.seed)
        out["recall_at_fpir"][target] = {"threshold": t, "recall": float(found.mean()), "found": int(found.sum()),
                                         "ci": ci}
    return out


def false_candidates(gallery_scores: np.ndarray, identity: np.ndarray, threshold: float, top: int,
                     ) -> tuple[int, list[tuple[int, int, float]]]:
    """Different-identity record pairs a dedup run would report: the count at ``threshold`` and the best ``top``.

    Args:
        gallery_scores: float [G, G] record-vs-record scores (NaN diagonal); a pair scores the better of
            its two directions.
        identity: int [G] identity code of each record.
        threshold: Score a reported pair reaches.
        top: How many of the best-scoring false pairs to return.

    Returns:
        (pairs at or above the threshold, [(a, b, score)] best first).
    """
    s = np.where(np.isnan(gallery_scores), -np.inf, gallery_scores)
    sym = np.maximum(s, s.T)
    iu, ju = np.triu_indices(len(s), k=1)
    score = sym[iu, ju]
    false = identity[iu] != identity[ju]
    iu, ju, score = iu[false], ju[false], score[false]
    order = np.lexsort((ju, iu, -score))[:top]
    return int((score >= threshold).sum()), [(int(iu[i]), int(ju[i]), float(score[i])) for i in order]


def paired_deltas(
    base: SearchOutcome, other: SearchOutcome, base_dups: np.ndarray, other_dups: np.ndarray,
    fpir_targets: Sequence[float], k: int, boot: BootstrapSpec,
) -> dict[str, dict[float, dict[str, Any]]]:
    """Differences ``other - base`` of FNIR and duplicate recall at each FPIR, with paired bootstrap CIs.

    Both configurations searched the same probes and pairs, so each replicate resamples mated probes,
    non-mated probes and duplicate pairs once and scores both on that resample, thresholds re-derived. The
    threshold noise that makes each configuration's own interval wide is shared and cancels here: this is
    the interval to read when asking whether a technique helps.

    Args:
        base, other: The two configurations' outcomes on the same probes.
        base_dups, other_dups: Per planted pair, the best in-list score (-inf when not returned).
        fpir_targets: FPIR operating points.
        k: Candidate list length.
        boot: Bootstrap settings.
    """
    out: dict[str, dict[float, dict[str, Any]]] = {"fnir": {}, "dup_recall": {}}
    for t in fpir_targets:

        def fnir(ms: np.ndarray, mr: np.ndarray, nt: np.ndarray, tt: float = t) -> float:
            return fnir_at_fpir(ms, mr, nt, (tt,), max_rank=k)[tt]["fnir"]

        def d_fnir(ams: np.ndarray, amr: np.ndarray, oms: np.ndarray, omr: np.ndarray, ant: np.ndarray,
                   ont: np.ndarray) -> float:
            return fnir(oms, omr, ont) - fnir(ams, amr, ant)

        arrays = (base.mate_scores, base.mate_ranks, other.mate_scores, other.mate_ranks, base.nonmate_top,
                  other.nonmate_top)
        ci = bootstrap_ci(d_fnir, *arrays, groups=[0, 0, 0, 0, 1, 1], n_boot=boot.n_boot, alpha=boot.alpha,
                          seed=boot.seed)
        out["fnir"][t] = {"delta": d_fnir(*arrays), "ci": ci}
        if base_dups.size:

            def recall(bs: np.ndarray, nt: np.ndarray, tt: float = t) -> float:
                return float(np.mean(bs >= nonmate_threshold(nt, tt)))

            def d_recall(ab: np.ndarray, ob: np.ndarray, ant: np.ndarray, ont: np.ndarray) -> float:
                return recall(ob, ont) - recall(ab, ant)

            darr = (base_dups, other_dups, base.nonmate_top, other.nonmate_top)
            dci = bootstrap_ci(d_recall, *darr, groups=[0, 0, 1, 1], n_boot=boot.n_boot, alpha=boot.alpha,
                               seed=boot.seed)
            out["dup_recall"][t] = {"delta": d_recall(*darr), "ci": dci}
    return out


# --------------------------------------------------------------------------------------------- groups


def group_rates(scores: np.ndarray, is_same: np.ndarray, group_a: np.ndarray, group_b: np.ndarray,
                threshold: float) -> dict[str, Any]:
    """FMR and FNMR per group at one threshold; a comparison counts for each group its two photos belong to.

    A Yale A mate pair (the same person under two lighting conditions) counts once for each condition,
    so a group's FNMR is the rate at which a photo taken under it fails to match the same person's
    other photos.
    """
    s, _ = fill_failures(scores)
    y = np.asarray(is_same, dtype=bool)
    ga, gb = np.asarray(group_a), np.asarray(group_b)
    other = ga != gb
    all_s = np.concatenate([s, s[other]])
    all_y = np.concatenate([y, y[other]])
    all_g = np.concatenate([ga, gb[other]])
    return per_group_rates(all_s, all_y, all_g, threshold)


def finite_or_none(value: float) -> float | None:
    """``value`` unless it is NaN or infinite (for JSON and Delta)."""
    return None if value is None or not math.isfinite(value) else float(value)
