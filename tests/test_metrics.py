"""Tests for facelink.metrics on constructed cases with known answers and seeded Gaussians."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from facelink.metrics import (
    best_threshold,
    bootstrap_ci,
    det_curve,
    fnir_at_fpir,
    identification_rates,
    kfold_verification,
    per_group_rates,
    plot_det,
    plot_roc,
    rank_miss_rates,
    roc,
    tar_at_far,
    threshold_at_fmr,
)

# 1000 non-mated probes whose top scores are 0.000, 0.001, ..., 0.999.
NONMATE_TOPS = np.arange(1000) / 1000
# Ten mated probes: (mate score, mate rank); rank inf and score NaN where the mate was not returned.
MATED = [(0.995, 1), (0.999, 1), (0.98, 1), (0.9995, 3), (np.nan, np.inf), (0.991, 12), (0.9975, 1), (0.5, 2)]
MATED += [(0.9999, 1), (0.9965, 1)]
MATE_SCORES = np.array([score for score, _ in MATED])
MATE_RANKS = np.array([rank for _, rank in MATED], dtype=float)


def _folds(n: int, k: int) -> np.ndarray:
    return np.arange(n) % k


def test_best_threshold_on_a_hand_case() -> None:
    assert best_threshold([0.1, 0.2, 0.3, 0.4], [False, False, True, True]) == (pytest.approx(0.25), 1.0)


def test_kfold_on_separable_data_is_perfect() -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0.6, 0.9, 300), rng.uniform(0.0, 0.4, 300)])
    is_same = np.arange(600) < 300
    result = kfold_verification(scores, is_same, rng.permutation(_folds(600, 10)))
    assert result["accuracy_mean"] == 1.0
    assert result["accuracy_std"] == 0.0
    assert all(0.4 < t < 0.6 for t in result["thresholds"])
    assert len(result["accuracies"]) == 10


def test_kfold_on_overlapping_gaussians_reaches_the_bayes_optimum() -> None:
    rng = np.random.default_rng(1)
    n = 10_000
    # Equal priors, equal variance: the optimum threshold is the midpoint 0.35 and
    # accuracy = Phi(0.15 / 0.1).
    scores = np.concatenate([rng.normal(0.5, 0.1, n), rng.normal(0.2, 0.1, n)])
    is_same = np.arange(2 * n) < n
    result = kfold_verification(scores, is_same, rng.permutation(_folds(2 * n, 10)))
    optimum = stats.norm.cdf(1.5)
    assert abs(result["accuracy_mean"] - optimum) < 0.01 * optimum
    assert np.mean(result["thresholds"]) == pytest.approx(0.35, abs=0.02)


def test_kfold_rejects_bad_folds() -> None:
    with pytest.raises(ValueError, match="at least 2 folds"):
        kfold_verification([0.1, 0.9], [False, True], [0, 0])
    with pytest.raises(ValueError, match="only one class"):
        kfold_verification([0.1, 0.9, 0.8], [False, True, True], [0, 1, 1])


def test_roc_and_det_on_a_hand_case() -> None:
    far, tar, thresholds = roc([0.9, 0.8, 0.8, 0.3], [True, False, True, False])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.8, 0.3])
    np.testing.assert_array_equal(tar, [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(far, [0.0, 0.0, 0.5, 1.0])
    fmr, fnmr = det_curve([0.9, 0.8, 0.8, 0.3], [1, 0, 1, 0])
    np.testing.assert_array_equal(fmr, far)
    np.testing.assert_array_equal(fnmr, [1.0, 0.5, 0.0, 0.0])


def test_threshold_at_fmr_counts_exactly() -> None:
    x = np.arange(100) / 100
    # 0.29 * 100 is 28.999999999999996 in floating point; the threshold must still allow 29.
    assert np.mean(x >= threshold_at_fmr(x, 0.29)) == 0.29
    assert threshold_at_fmr(x, 1.0) == 0.0
    with pytest.raises(ValueError, match="target"):
        threshold_at_fmr(x, 0.0)


def test_tar_at_far_on_a_constructed_case() -> None:
    mates = np.array([0.995, 0.99, 0.989, 0.5, 0.9991])
    scores = np.concatenate([NONMATE_TOPS, mates])
    is_same = np.arange(scores.size) >= NONMATE_TOPS.size
    result = tar_at_far(scores, is_same, far_targets=(0.01, 0.001))
    assert result[0.01]["far"] == 0.01
    assert result[0.01]["tar"] == 0.6
    assert 0.989 < result[0.01]["threshold"] <= 0.99
    # One non-mate (0.999) may pass: the threshold sits just above the second largest, 0.998.
    assert result[0.001] == {"threshold": pytest.approx(0.998), "tar": 0.2, "far": 0.001}


def test_fnir_at_fpir_on_a_constructed_case() -> None:
    result = fnir_at_fpir(MATE_SCORES, MATE_RANKS, NONMATE_TOPS, fpir_targets=(0.01, 0.003))
    # FPIR 0.01 -> threshold just above 0.989: misses are the absent mate and scores 0.98 and 0.5.
    assert result[0.01]["fpir"] == 0.01
    assert result[0.01]["fnir"] == pytest.approx(0.3)
    # FPIR 0.003 -> threshold just above 0.996: scores 0.995 and 0.991 are missed too.
    assert result[0.003]["fpir"] == 0.003
    assert result[0.003]["fnir"] == pytest.approx(0.5)
    rank_one = fnir_at_fpir(MATE_SCORES, MATE_RANKS, NONMATE_TOPS, fpir_targets=(0.01,), max_rank=1)
    # At rank 1 the mates at ranks 3 and 12 are misses as well.
    assert rank_one[0.01]["fnir"] == pytest.approx(0.5)


def test_identification_rates_are_monotone_and_count_empty_lists() -> None:
    tops = np.append(NONMATE_TOPS, [-np.inf] * 1000)
    rates = identification_rates(MATE_SCORES, MATE_RANKS, tops, np.linspace(0, 1, 101))
    assert np.all(np.diff(rates["fpir"]) <= 0)
    assert np.all(np.diff(rates["fnir"]) >= 0)
    assert rates["fpir"][0] == 0.5
    assert rates["fnir"][0] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="mate_ranks"):
        identification_rates([0.5], [0], tops, [0.5])


def test_rank_miss_rates() -> None:
    assert rank_miss_rates(MATE_RANKS) == {1: pytest.approx(0.4), 10: pytest.approx(0.2)}


def test_bootstrap_ci_covers_the_mean_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(2)
    covered = 0
    trials = 200
    for trial in range(trials):
        lo, hi = bootstrap_ci(np.mean, rng.normal(1.0, 1.0, 100), n_boot=200, seed=trial)
        covered += lo <= 1.0 <= hi
    assert 0.88 <= covered / trials <= 0.99


def test_bootstrap_ci_of_fnir_at_fpir_covers_the_true_value() -> None:
    rng = np.random.default_rng(3)
    nonmate_tops = rng.normal(0.0, 0.1, 5000)
    mate_scores, mate_ranks = rng.normal(0.4, 0.1, 2000), np.ones(2000)
    truth = stats.norm.cdf((stats.norm.isf(0.01) * 0.1 - 0.4) / 0.1)

    def fnir(scores: np.ndarray, ranks: np.ndarray, tops: np.ndarray) -> float:
        return fnir_at_fpir(scores, ranks, tops, fpir_targets=(0.01,))[0.01]["fnir"]

    lo, hi = bootstrap_ci(fnir, mate_scores, mate_ranks, nonmate_tops, n_boot=300, groups=(0, 0, 1))
    assert lo <= truth <= hi
    assert hi - lo < 0.05


def test_bootstrap_ci_rejects_ragged_groups() -> None:
    with pytest.raises(ValueError, match="group 0"):
        bootstrap_ci(lambda a, b: 0.0, np.zeros(3), np.zeros(4), groups=(0, 0))


def test_per_group_rates_on_a_constructed_case() -> None:
    def block(n_nonmate: int, above: int, n_mate: int, below: int) -> tuple[np.ndarray, np.ndarray]:
        nonmate = np.where(np.arange(n_nonmate) < above, 0.8, 0.1)
        mate = np.where(np.arange(n_mate) < below, 0.3, 0.9)
        return np.concatenate([nonmate, mate]), np.arange(n_nonmate + n_mate) >= n_nonmate

    scores_a, same_a = block(100, 2, 50, 5)
    scores_b, same_b = block(100, 4, 50, 1)
    labels = np.array(["a"] * scores_a.size + ["b"] * scores_b.size)
    result = per_group_rates(
        np.concatenate([scores_a, scores_b]), np.concatenate([same_a, same_b]), labels, threshold=0.5
    )
    assert result["groups"]["a"] == {"fmr": 0.02, "fnmr": 0.1, "n_nonmate": 100, "n_mate": 50}
    assert result["groups"]["b"]["fmr"] == 0.04
    assert result["fmr_worst_group"] == "b" and result["fmr_ratio"] == pytest.approx(2.0)
    assert result["fnmr_worst_group"] == "a" and result["fnmr_ratio"] == pytest.approx(5.0)


def test_plots_write_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    scores = np.concatenate([rng.normal(0.5, 0.1, 500), rng.normal(0.0, 0.1, 500)])
    is_same = np.arange(1000) < 500
    far, tar, _ = roc(scores, is_same)
    for path in (
        plot_roc({"model": (far, tar)}, tmp_path / "roc.png"),
        plot_det({"model": det_curve(scores, is_same)}, tmp_path / "plots" / "det.png"),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one curve"):
        plot_det({}, tmp_path / "empty.png")
    # A perfectly separated small set has no point with both rates > 0: still a (labelled) plot.
    perfect = np.r_[np.full(5, 0.9), np.full(5, 0.1)]
    path = plot_det({"tiny": det_curve(perfect, np.arange(10) < 5)}, tmp_path / "perfect.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
