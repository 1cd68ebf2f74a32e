"""FPIR measured on searches, its model in gallery size, and how estimates are shown (facelink.search.fpir, rates)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facelink.config import Config
from facelink.errors import InputError
from facelink.index.synthetic import generate_gallery, reference_stats
from facelink.rates import format_rate
from facelink.search.calibration import FORMAT, FORMAT_V1, Calibration, fit_calibration, load_calibration
from facelink.search.fpir import (
    FpirModel,
    _choose_form,
    capped_pool,
    gallery_sizes,
    heldout_fpir_check,
    measure_fpir_model,
    top_nonmate_scores,
)

BANDS = {"strong": 0.01, "possible": 0.05}


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic unit embeddings shaped after mobilefacenet on lfw_dev: 1,500 people, 1-3 photos each."""
    x, labels = generate_gallery(reference_stats(), 1500, [0.5, 0.35, 0.15], seed=3)
    return x, labels


@pytest.fixture(scope="module")
def model(faces: tuple[np.ndarray, np.ndarray]) -> FpirModel:
    x, labels = faces
    return measure_fpir_model(x, labels, "synthetic", seed=1, repeats=2)


def test_top_scores_exclude_mates_and_grow_with_the_gallery() -> None:
    rng = np.random.default_rng(0)
    ident = np.repeat(np.arange(50), 2)
    x = rng.standard_normal((100, 16)).astype(np.float32)
    x[1::2] = x[0::2]  # each person's two photos identical: a mate would score 1.0
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    tops = top_nonmate_scores(x, ident, x, ident, [10, 40, 98], rng, repeats=3)
    assert tops.shape == (300, 3)
    assert np.all(tops < 0.999)  # never the mate
    assert np.all(np.diff(tops, axis=1) >= 0)  # nested galleries: the top score can only grow
    brute = max(float(x[0] @ x[j]) for j in range(2, 100))
    assert tops[0, 2] == pytest.approx(brute, abs=1e-6)  # 98 = every other person's photo


def test_capped_pool_and_sizes() -> None:
    ident = np.array([0] * 10 + [1] * 3 + [2])
    pool = capped_pool(ident, 2, np.random.default_rng(0))
    assert sorted(np.bincount(ident[pool]).tolist()) == [1, 2, 2]
    assert gallery_sizes(5000) == (100, 200, 400, 800, 1600, 3200, 5000)
    assert gallery_sizes(3300) == (100, 200, 400, 800, 1600, 3300)  # no size within 20% of the largest
    assert gallery_sizes(1000, n_min=1000) == (1000,)


def test_model_levels_follow_the_number_of_searches(model: FpirModel, faces: tuple[np.ndarray, np.ndarray]) -> None:
    n = len(faces[0])
    assert 2000 < n < 3000
    assert model.searches == n  # every synthetic photo searches
    assert model.floor == 0.005  # 0.003 * n < 10 expected events: not measured
    assert model.n_max == model.sizes[-1] > 2000
    t = model.thresholds_at(1000)
    assert np.all(np.diff(t) <= 0)  # a looser FPIR has a lower threshold
    assert model.score_at_fpir(0.05, 100_000) > model.score_at_fpir(0.05, 1000)  # larger gallery, higher bar


def test_form_is_chosen_by_predicting_the_largest_gallery(model: FpirModel) -> None:
    sizes = np.array([100, 200, 400, 800, 1600, 3200, 40_000])
    levels = np.array([[0.01], [0.05]])
    gaussian = 0.2 + 0.1 * np.sqrt(np.log(sizes))[None, :] - levels  # the top of N Gaussian draws
    exponential = 0.2 + 0.05 * np.log10(sizes)[None, :] - levels
    cols = np.arange(sizes.size)
    assert _choose_form(sizes, gaussian, cols) == "sqrt_log"
    assert _choose_form(sizes, exponential, cols) == "log"
    assert _choose_form(sizes[:3], exponential[:, :3], cols[:3]) == "log"  # too few small galleries: log
    assert FpirModel.from_dict(model.to_dict()) == model
    as_sqrt = FpirModel.from_dict({**model.to_dict(), "form": "sqrt_log"})
    as_log = FpirModel.from_dict({**model.to_dict(), "form": "log"})
    assert "form" not in as_log.to_dict()  # artefacts from before forms existed keep their content hash
    assert as_log.score_at_fpir(0.05, 10**6) > as_sqrt.score_at_fpir(0.05, 10**6)  # log N keeps rising faster


def test_fpir_inverts_the_thresholds_and_clamps_at_the_floor(model: FpirModel) -> None:
    for level in (0.005, 0.01, 0.05, 0.2):
        for n in (500, 3000, 50_000):
            assert model.fpir([model.score_at_fpir(level, n)], n)[0] == pytest.approx(level, rel=1e-6)
    top = model.score_at_fpir(model.floor, 3000)
    assert model.fpir([top + 0.2], 3000)[0] == pytest.approx(model.floor)  # at most the floor, never 1e-12
    below = model.score_at_fpir(0.0005, 3000)  # extrapolated below the floor: still a stricter bar
    assert below > top
    assert model.describe(50_000, {"strict": 0.0005, "possible": 0.05})["levels_below_measured"] == ["strict"]


def test_heldout_folds_see_the_target_rates(faces: tuple[np.ndarray, np.ndarray]) -> None:
    x, labels = faces
    check = heldout_fpir_check(x, labels, BANDS, folds=4, seed=2, repeats=2, min_size=500)
    assert check["searches"] == len(x)
    assert {r["gallery_size"] for r in check["rows"]} == set(check["sizes"])
    assert check["sizes"][0] == 500 and check["sizes"][-1] > 2000
    for r in check["rows"]:
        assert r["ci"][0] <= r["observed_fpir"] <= r["ci"][1]
        assert 0.5 <= r["ratio"] <= 2.0, r
    assert check["within_2x"]
    assert any("gallery size extrapolated" in r["notes"] for r in check["rows"])  # folds fit on fewer faces


def test_calibration_carries_the_model_and_keeps_format_1(model: FpirModel, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    plain = fit_calibration(rng.normal(0, 0.1, 5000).clip(-1, 1), rng.normal(0.6, 0.1, 500).clip(-1, 1), "m@1",
                            "synthetic", fitted_at="2024-01-01T00:00:00+00:00")
    assert json.loads(plain.to_json())["format"] == FORMAT_V1  # unchanged artefacts keep their version
    with_model = plain.with_fpir_model(model)
    doc = json.loads(with_model.to_json())
    assert doc["format"] == FORMAT and doc["fpir"]["levels"][0] == model.floor
    back = Calibration.from_json(with_model.to_json())
    assert back.version == with_model.version != plain.version
    assert back.score_at_fpir(0.05, 20_000) == pytest.approx(model.score_at_fpir(0.05, 20_000))
    assert back.fpir_floor == model.floor
    assert 1e-4 < plain.fmr_floor < 1e-1  # 100 of 5,000 non-mates: the empirical FMR stops near 2e-2


def test_jobs_refuse_a_calibration_without_an_fpir_model(model: FpirModel, cfg: Config) -> None:
    rng = np.random.default_rng(0)
    plain = fit_calibration(rng.normal(0, 0.1, 5000).clip(-1, 1), rng.normal(0.6, 0.1, 500).clip(-1, 1), "m@1",
                            "synthetic")
    from facelink.search.calibration import calibration_path

    plain.save(calibration_path(cfg, "m@1"))
    with pytest.raises(InputError, match="no measured FPIR model"):
        load_calibration(cfg, "m@1")
    plain.with_fpir_model(model).save(calibration_path(cfg, "m@1"))
    assert load_calibration(cfg, "m@1").fpir_model is not None


def test_format_rate_shows_only_supported_precision() -> None:
    assert format_rate(7.1e-12, 2.5e-5) == "below 2.5e-05, beyond the measured range"
    assert format_rate(2.5e-5, 2.5e-5) == "below 2.5e-05, beyond the measured range"
    assert format_rate(0.003141, 0.0014) == "0.0031"
    assert format_rate(7.1e-12, None) == "below 0.0001, beyond the measured range"  # floor not recorded
    assert format_rate(float("nan"), 1e-3) == "n/a"
    assert format_rate(0.003, 0.0) == "0.003"  # a configured level, not an estimate


def test_evaluation_reports_heldout_fpir_for_the_default(faces: tuple[np.ndarray, np.ndarray], cfg: Config,
                                                         tmp_path: Path) -> None:
    from facelink.evaluation.dataset import LabelledSet
    from facelink.evaluation.embeddings import EmbeddingStore
    from facelink.evaluation.report import fpir_check_lines
    from facelink.evaluation.runner import Inputs, Outputs, _fpir_check
    from facelink.evaluation.settings import EvaluationSettings
    from facelink.evaluation.techniques import default_config

    x, labels = faces
    paths = tuple(f"p{i:05d}.jpg" for i in range(len(x)))
    labelled = LabelledSet("synthetic", tmp_path, tmp_path / "manifest.csv", paths, tuple(str(v) for v in labels),
                           tuple(f"{i:064x}" for i in range(len(x))))
    default = default_config(cfg)
    # Every member of the configured recogniser gets the same unit vectors: a fusion of them scores as one.
    store = EmbeddingStore(labelled.record_ids, vectors={v: x for v in default.variants})
    inputs = Inputs(labelled, store, None, None, EvaluationSettings(folds=4), 10, {}, bands=BANDS)  # type: ignore[arg-type]
    out = Outputs({}, [], {}, {})
    _fpir_check(inputs, [default], out)
    check = out.report["fpir_check"]["default"]
    assert check["searches"] == len(x) and check["within_2x"]
    metrics = {r["metric"] for r in out.rows}
    assert {f"fpir_observed_{b}_{v:g}@gallery_{n}" for b, v in BANDS.items() for n in check["sizes"]} == metrics
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in out.rows)
    assert len(fpir_check_lines(check)) == 2 + len(check["rows"])
