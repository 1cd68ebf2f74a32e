"""Tests for facelink.search.calibration on seeded synthetic scores whose true distribution is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from facelink.search.calibration import (
    LOG10_FMR_FLOOR,
    Calibration,
    band_for,
    cohort_normalise,
    fit_calibration,
    fit_fused_calibration,
    fuse_scores_fmr,
    fused_score_range,
)

NONMATE_SD = 0.1
MATE_MEAN, MATE_SD = 0.6, 0.1
N_FIT = 200_000
FITTED_AT = "2024-01-01T00:00:00+00:00"


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, n: int) -> np.ndarray:
    x = rng.normal(mean, sd, n)
    return x[np.abs(x) <= 1.0]


def _true_fmr(score: float) -> float:
    # Truncating N(0, 0.1) to [-1, 1] cuts 10 sd out: the renormalisation is below 1e-22.
    return float(stats.norm.sf(score / NONMATE_SD))


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    rng = np.random.default_rng(0)
    return fit_calibration(
        _truncated_normal(rng, 0.0, NONMATE_SD, N_FIT),
        _truncated_normal(rng, MATE_MEAN, MATE_SD, 20_000),
        model_id="synthetic-normal",
        source="seeded N(0, 0.1) non-mates, N(0.6, 0.1) mates",
        fitted_at=FITTED_AT,
    )


@pytest.mark.parametrize("target", [1e-2, 1e-3])
def test_fmr_at_threshold_matches_fresh_sample(calibration: Calibration, target: float) -> None:
    fresh = _truncated_normal(np.random.default_rng(1), 0.0, NONMATE_SD, 2_000_000)
    measured = np.mean(fresh >= calibration.score_at_fmr(target))
    assert 1 / 1.2 < measured / target < 1.2


@pytest.mark.parametrize(("target", "factor"), [(1e-5, 2.0), (1e-6, 3.0)])
def test_gpd_tail_extrapolates_past_the_sample(
    calibration: Calibration, target: float, factor: float
) -> None:
    threshold = calibration.score_at_fmr(target)
    assert threshold > calibration.tail_switch_score
    assert 1 / factor < _true_fmr(threshold) / target < factor


def test_gpd_tail_on_random_direction_cosines() -> None:
    # Cosine of two random unit vectors in 512-d: (c + 1) / 2 ~ Beta(255.5, 255.5), bounded support.
    a = (512 - 1) / 2
    rng = np.random.default_rng(2)
    nonmate = 2 * rng.beta(a, a, N_FIT) - 1
    calibration = fit_calibration(nonmate, [0.5, 0.6], "random-512", "beta", fitted_at=FITTED_AT)
    threshold = calibration.score_at_fmr(1e-5)
    true_fmr = stats.beta.sf((threshold + 1) / 2, a, a)
    assert 0.5 < true_fmr / 1e-5 < 2.0


def test_fmr_beyond_the_largest_non_mate_is_small_but_positive(calibration: Calibration) -> None:
    top = calibration.tail_threshold + 0.2
    assert 0 < calibration.fmr(top) < 1 / calibration.n_nonmate
    assert calibration.fmr(-1.0) == pytest.approx(1.0)
    assert calibration.fmr(1.0) == pytest.approx(10**LOG10_FMR_FLOOR)


def test_fmr_is_non_increasing_and_inverts_exactly(calibration: Calibration) -> None:
    fmr = calibration.fmr(np.linspace(-1, 1, 20_001))
    assert np.all(np.diff(fmr) <= 0)
    for target in (0.3, 1e-2, 1e-4, 1e-7, 1e-10):
        assert calibration.fmr(calibration.score_at_fmr(target)) == pytest.approx(target, rel=1e-9)
    assert calibration.score_at_fmr(1.0) == -1.0


def test_fpir_is_monotone_and_matches_the_direct_formula(calibration: Calibration) -> None:
    scores = np.linspace(0.0, 0.6, 601)
    fpir = calibration.fpir(scores, 1000)
    assert np.all(np.diff(fpir) <= 0)
    assert np.all((fpir >= 0) & (fpir <= 1))
    # rtol covers the direct formula's own cancellation error where FMR is ~1e-12.
    np.testing.assert_allclose(fpir, 1 - (1 - calibration.fmr(scores)) ** 1000, rtol=1e-5, atol=0)
    # For a huge gallery and tiny FMR the direct formula underflows; the stable one stays ~ N * FMR.
    tiny = calibration.score_at_fmr(1e-14)
    assert calibration.fpir(tiny, 10**6) == pytest.approx(1e-8, rel=1e-6)
    assert np.all(calibration.fpir(scores, 10**7) >= fpir)


def test_score_at_fpir_inverts_fpir(calibration: Calibration) -> None:
    for gallery_size in (1, 10_000, 10**7):
        threshold = calibration.score_at_fpir(0.01, gallery_size)
        assert calibration.fpir(threshold, gallery_size) == pytest.approx(0.01, rel=1e-6)
    assert calibration.score_at_fpir(0.01, 10**7) > calibration.score_at_fpir(0.01, 10_000)


def test_fnmr_follows_the_mate_distribution(calibration: Calibration) -> None:
    for score in (0.4, 0.6, 0.7):
        truth = stats.norm.cdf((score - MATE_MEAN) / MATE_SD)
        assert calibration.fnmr(score) == pytest.approx(truth, abs=0.01)


def test_json_roundtrip_and_save_load(calibration: Calibration, tmp_path: Path) -> None:
    restored = Calibration.from_json(calibration.to_json())
    assert restored.version == calibration.version
    assert restored.data_digest == calibration.data_digest
    np.testing.assert_array_equal(restored.log10_fmr_table, calibration.log10_fmr_table)
    loaded = Calibration.load(calibration.save(tmp_path / "cal" / "model.json"))
    assert loaded.version == calibration.version
    scores = np.linspace(-1, 1, 101)
    np.testing.assert_array_equal(loaded.fmr(scores), calibration.fmr(scores))
    assert list(tmp_path.joinpath("cal").iterdir()) == [tmp_path / "cal" / "model.json"]


def test_edited_or_foreign_artefact_is_refused(calibration: Calibration) -> None:
    doc = json.loads(calibration.to_json())
    doc["n_nonmate"] += 1
    with pytest.raises(ValueError, match="does not match its content"):
        Calibration.from_json(json.dumps(doc))
    with pytest.raises(ValueError, match="format"):
        Calibration.from_json(json.dumps({"format": "other/1"}))
    del doc["tail"]
    with pytest.raises(ValueError, match="missing"):
        Calibration.from_json(json.dumps(doc))


def test_version_and_digest_depend_on_content_only() -> None:
    rng = np.random.default_rng(3)
    nonmate, mate = rng.uniform(-0.3, 0.3, 1000), rng.uniform(0.4, 0.9, 50)
    first = fit_calibration(nonmate, mate, "m", "s", fitted_at=FITTED_AT)
    shuffled = fit_calibration(rng.permutation(nonmate), mate, "m", "s", fitted_at=FITTED_AT)
    other = fit_calibration(nonmate, mate, "m2", "s", fitted_at=FITTED_AT)
    assert first.version == shuffled.version
    assert first.data_digest == other.data_digest
    assert first.version != other.version


@pytest.mark.parametrize(
    ("nonmate", "mate", "kwargs", "message"),
    [
        ([], [0.5], {}, "nonmate_scores is empty"),
        (np.zeros(500), [], {}, "mate_scores is empty"),
        (np.append(np.zeros(499), np.nan), [0.5], {}, "non-finite"),
        (np.append(np.zeros(499), 1.5), [0.5], {}, r"outside \[-1, 1\]"),
        (np.zeros((10, 50)), [0.5], {}, "1-D"),
        (np.zeros(20), [0.5], {}, "at least 100"),
        (np.linspace(-0.5, 0.5, 500), [0.5], {"tail_fraction": 0.7}, "tail_fraction"),
        (np.linspace(-0.5, 0.5, 500), [0.5], {"grid": [0.0, 0.0, 1.0]}, "strictly increasing"),
    ],
)
def test_invalid_fit_inputs_raise(nonmate: object, mate: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_calibration(nonmate, mate, "m", "s", **kwargs)  # type: ignore[arg-type]


def test_invalid_targets_raise(calibration: Calibration) -> None:
    for target in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="target_fmr"):
            calibration.score_at_fmr(target)
    for gallery_size in (0, 1.5, True):
        with pytest.raises(ValueError, match="gallery_size"):
            calibration.fpir(0.3, gallery_size)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="below the calibrated FMR"):
        calibration.score_at_fmr(1e-16)


def test_band_for_picks_the_tightest_band() -> None:
    bands = {"possible": 0.01, "strong": 0.001}
    labels = band_for(np.array([[0.0005, 0.001, 0.005], [0.02, np.nan, 0.01]]), bands)
    assert labels.tolist() == [["strong", "strong", "possible"], [None, None, "possible"]]
    with pytest.raises(ValueError, match="at least one band"):
        band_for([0.1], {})
    with pytest.raises(ValueError, match="bands"):
        band_for([0.1], {"bad": 0.0})


def test_fused_score_is_evidence_sum_and_calibrates_better() -> None:
    rng = np.random.default_rng(4)
    n, m = 50_000, 5_000
    # Two models with independent non-mate noise and moderately correlated mate scores.
    nonmate = [rng.normal(0, 0.1, n), rng.normal(0, 0.1, n)]
    shared = rng.normal(0, 1, m)
    mate = [
        np.clip(0.3 + 0.1 * (0.5 * shared + np.sqrt(0.75) * rng.normal(0, 1, m)), -1, 1) for _ in range(2)
    ]
    singles = [fit_calibration(nonmate[i], mate[i], f"m{i}", "s", fitted_at=FITTED_AT) for i in range(2)]

    summed = fuse_scores_fmr([mate[0], mate[1]], singles)
    expected = -(singles[0].log10_fmr(mate[0]) + singles[1].log10_fmr(mate[1]))
    np.testing.assert_allclose(summed, expected)
    np.testing.assert_allclose(fuse_scores_fmr(mate, singles, method="mean"), expected / 2)
    assert fused_score_range(2) == (0.0, 30.0)

    held_out_nonmate = [rng.normal(0, 0.1, n), rng.normal(0, 0.1, n)]
    fused = fit_fused_calibration(held_out_nonmate, mate, singles, "fuse:m0+m1", "s", fitted_at=FITTED_AT)
    fused_fnmr = fused.fnmr(fused.score_at_fmr(1e-3))
    single_fnmr = [cal.fnmr(cal.score_at_fmr(1e-3)) for cal in singles]
    assert fused_fnmr < min(single_fnmr) - 0.05


def test_fuse_rejects_mismatched_inputs(calibration: Calibration) -> None:
    with pytest.raises(ValueError, match="one calibration per score list"):
        fuse_scores_fmr([np.zeros(3)], [calibration, calibration])
    with pytest.raises(ValueError, match="share one shape"):
        fuse_scores_fmr([np.zeros(3), np.zeros(4)], [calibration, calibration])


def test_cohort_normalise_uses_the_top_cohort_scores() -> None:
    rng = np.random.default_rng(5)
    scores, cohort = rng.uniform(-0.2, 0.8, (4, 6)), rng.uniform(-0.3, 0.4, (4, 100))
    normalised = cohort_normalise(scores, cohort, top=10)
    best = np.sort(cohort, axis=1)[:, -10:]
    expected = (scores - best.mean(axis=1, keepdims=True)) / best.std(axis=1, keepdims=True)
    np.testing.assert_allclose(normalised, expected)
    # A probe that scores high against everyone is pulled back to the same scale.
    offset = np.array([[0.0], [0.1], [0.2], [0.3]])
    np.testing.assert_allclose(cohort_normalise(scores + offset, cohort + offset, top=10), normalised)
    with pytest.raises(ValueError, match="top must be"):
        cohort_normalise(scores, cohort, top=101)
    with pytest.raises(ValueError, match="share Q"):
        cohort_normalise(scores, cohort[:3], top=10)
