"""Synthetic gallery generator: fitting, reproducing similarity statistics, probes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facelink.index.synthetic import (
    EmbeddingStats,
    MatchTolerance,
    SimilaritySummary,
    check_stats_match,
    fit_embedding_stats,
    generate_gallery,
    generate_probes,
    identity_centres,
    similarity_summary,
)


def real_like_set(n_identities: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labelled unit vectors built differently from the model being fitted.

    Student-t identity centres with a power-law spectrum around a mean direction; photo variation
    in a 12-d "pose" subspace plus isotropic noise, scaled by a gamma-distributed quality; photo
    counts 1 to 8 with many single-photo identities, as in LFW.
    """
    rng = np.random.default_rng(seed)
    d = 128
    mean = rng.standard_normal(d)
    mean *= 0.35 / np.linalg.norm(mean)
    axes, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spread = np.arange(1, d + 1) ** -0.35
    spread *= np.sqrt(0.8 / np.sum(spread**2))
    centres = mean + (rng.standard_t(8, size=(n_identities, d)) * spread) @ axes.T
    pose = rng.standard_normal((12, d)) * 0.013
    counts = rng.choice(np.arange(1, 9), size=n_identities, p=[0.45, 0.2, 0.1, 0.08, 0.07, 0.05, 0.03, 0.02])
    labels = np.repeat(np.arange(n_identities), counts)
    quality = rng.gamma(6.0, 1 / 6.0, size=(labels.size, 1))
    noise = rng.standard_normal((labels.size, 12)) @ pose + rng.standard_normal((labels.size, d)) * 0.028
    x = centres[labels] + quality * noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


@pytest.fixture(scope="module")
def real_like() -> tuple[np.ndarray, np.ndarray]:
    return real_like_set(4000, seed=3)


@pytest.fixture(scope="module")
def fitted(real_like: tuple[np.ndarray, np.ndarray]) -> EmbeddingStats:
    return fit_embedding_stats(*real_like, seed=0)


def test_generated_similarities_match_the_fitted_data(
    real_like: tuple[np.ndarray, np.ndarray], fitted: EmbeddingStats
) -> None:
    real = similarity_summary(*real_like, n_pairs=20_000, seed=1)
    xb, labels = generate_gallery(fitted, 6000, [0.3, 0.3, 0.2, 0.2], seed=7)
    synth = similarity_summary(xb, labels, n_pairs=20_000, seed=1)
    assert check_stats_match(real, synth, MatchTolerance(median=0.03, tails=0.05)) == []
    # The sets are far from isotropic noise: same-person pairs are much closer than others.
    assert synth.quantile("same", 0.5) - synth.quantile("diff", 0.5) > 0.3


def test_check_stats_match_names_each_mismatch() -> None:
    levels = (0.01, 0.5, 0.99)
    real = SimilaritySummary(levels, (0.3, 0.6, 0.9), (-0.1, 0.05, 0.3))
    synth = SimilaritySummary(levels, (0.3, 0.65, 0.9), (-0.2, 0.05, 0.34))
    problems = check_stats_match(real, synth, MatchTolerance(median=0.03, tails=0.05))
    assert len(problems) == 2
    assert problems[0].startswith("same q0.5") and problems[1].startswith("diff q0.01")


def test_generated_vectors_are_unit_float32_and_grouped(fitted: EmbeddingStats) -> None:
    xb, labels = generate_gallery(fitted, 500, 3, seed=1)
    assert xb.shape == (1500, 128) and xb.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_allclose(np.linalg.norm(xb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(500), 3))


def test_generation_is_reproducible_and_centres_do_not_depend_on_gallery_size(fitted: EmbeddingStats) -> None:
    a, _ = generate_gallery(fitted, 300, [0.5, 0.5], seed=4)
    b, _ = generate_gallery(fitted, 300, [0.5, 0.5], seed=4)
    np.testing.assert_array_equal(a, b)
    few = identity_centres(fitted, np.array([5000, 7]), seed=4)
    many = identity_centres(fitted, np.arange(9000), seed=4)
    # Equal up to BLAS blocking of the matrix product, which depends on the row count.
    np.testing.assert_allclose(few, many[[5000, 7]], rtol=0, atol=1e-6)


def test_probes_match_gallery_identities(fitted: EmbeddingStats) -> None:
    xb, labels = generate_gallery(fitted, 2000, 2, seed=8)
    xq, probe_labels, mated = generate_probes(fitted, 2000, 200, 100, seed=8, probe_seed=1)
    assert xq.shape == (300, 128) and mated.sum() == 200
    assert (probe_labels[mated] < 2000).all() and (probe_labels[~mated] >= 2000).all()
    nearest = labels[np.argmax(xq @ xb.T, axis=1)]
    assert np.mean(nearest[mated] == probe_labels[mated]) > 0.9


def test_stats_round_trip_through_npz(fitted: EmbeddingStats, tmp_path: Path) -> None:
    path = tmp_path / "stats.npz"
    fitted.save(path)
    loaded = EmbeddingStats.load(path)
    assert loaded.target == fitted.target
    assert loaded.noise_scale == fitted.noise_scale and loaded.quality_log_std == fitted.quality_log_std
    np.testing.assert_array_equal(loaded.centre_basis, fitted.centre_basis)
    np.testing.assert_array_equal(
        generate_gallery(loaded, 50, 2, seed=1)[0], generate_gallery(fitted, 50, 2, seed=1)[0]
    )


def test_bad_photo_counts_are_refused(fitted: EmbeddingStats) -> None:
    with pytest.raises(ValueError, match="pmf"):
        generate_gallery(fitted, 10, [0.5, 0.6], seed=0)
    with pytest.raises(ValueError, match=">= 1"):
        generate_gallery(fitted, 10, 0, seed=0)
