"""Synthetic galleries of unit face embeddings with the similarity statistics of real ones.

Real face embeddings are not isotropic: they share a mean direction, identity centres spread over an
anisotropic subspace, and photos of one person scatter around their centre along typical directions
(pose, light, age). The model is the two-covariance (PLDA-style) Gaussian, projected to the sphere::

    centre_i = mean_scale · mean + B^½ z_i                                z_i ~ N(0, I)
    x_ij     = normalise(centre_i + noise_scale · q_ij · W^½ e_ij)        e_ij ~ N(0, I)

``B`` (between-identity) and ``W`` (within-identity) covariances are moment estimates from labelled
embeddings, kept as PCA bases and standard deviations. ``q_ij = exp(quality_log_std · g)`` with
``g ~ N(0, 1)`` varies photo quality, which fattens the lower tail of same-person similarity. The
three scalars are calibrated by simulation: ``noise_scale`` to the same-person median,
``quality_log_std`` to the gaps between that median and its 1% and 5% quantiles, and ``mean_scale``
to the different-person median. The spread of centres is not calibrated: with the mean fixed, a common
scale of centres and noise would not change the normalised vectors, so it is left to the moments.

Centres are a pure function of ``(seed, identity)``, so probes of gallery identities can be drawn later
without keeping the gallery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
# Identities per block of centres: block b is drawn from the stream (seed, CENTRE_STREAM, b).
CENTRE_BLOCK = 4096
CENTRE_STREAM, GALLERY_STREAM = 0, 1
# Rows generated per chunk: float32 work arrays of 64 MiB, far below the output's size at 1M vectors.
GENERATE_ROWS = 131_072
CALIBRATION_IDENTITIES = 5000
CALIBRATION_PAIRS = 20_000
CALIBRATION_ROUNDS = 3
BISECTION_STEPS = 16
# Lower quantiles of same-person similarity that quality variation is calibrated to: hard photos
# (profile, blur, occlusion) give real data a long lower tail.
SPREAD_LEVELS = (0.01, 0.05)

# Measured on lfw_dev with mobilefacenet_128d (20,000 pairs of each kind) at QUANTILE_LEVELS.
LFW_MOBILEFACENET_SAME = (0.225, 0.386, 0.550, 0.639, 0.712, 0.805, 0.859)
LFW_MOBILEFACENET_DIFF = (-0.221, -0.154, -0.057, 0.013, 0.080, 0.182, 0.254)

PhotoCounts = int | Sequence[float] | np.ndarray


@dataclass(frozen=True)
class SimilaritySummary:
    """Quantiles of cosine similarity for same-identity and different-identity pairs.

    Attributes:
        levels: the quantile levels, e.g. ``(0.01, ..., 0.99)``.
        same: same-identity quantiles, one per level.
        diff: different-identity quantiles, one per level.
    """

    levels: tuple[float, ...]
    same: tuple[float, ...]
    diff: tuple[float, ...]

    def quantile(self, kind: str, level: float) -> float:
        """The ``kind`` ("same" or "diff") quantile at ``level`` (one of ``levels``)."""
        values = self.same if kind == "same" else self.diff
        return values[self.levels.index(level)]


@dataclass(frozen=True)
class MatchTolerance:
    """Largest allowed absolute difference of similarity quantiles.

    Attributes:
        median: for the 0.5 quantile.
        tails: for every other level.
    """

    median: float = 0.03
    tails: float = 0.05


@dataclass(frozen=True)
class EmbeddingStats:
    """Fitted parameters of the synthetic embedding model (see the module docstring).

    Attributes:
        mean: float64 ``[d]`` mean of identity centres.
        centre_basis: ``[d, d]`` orthonormal columns, principal axes of identity centres.
        centre_std: ``[d]`` standard deviation of centres along each axis.
        noise_basis: ``[d, d]`` principal axes of within-identity variation.
        noise_std: ``[d]`` within-identity standard deviation along each axis.
        mean_scale: calibrated multiplier of ``mean``.
        noise_scale: calibrated multiplier of ``noise_std`` (the within-identity noise scale).
        quality_log_std: spread of the per-photo log noise multiplier.
        target: the similarity summary the model was calibrated to.
    """

    mean: np.ndarray
    centre_basis: np.ndarray
    centre_std: np.ndarray
    noise_basis: np.ndarray
    noise_std: np.ndarray
    mean_scale: float
    noise_scale: float
    quality_log_std: float
    target: SimilaritySummary

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.mean.shape[0])

    def save(self, path: str | Path) -> None:
        """Write the stats to an ``.npz`` (no pickled objects)."""
        arrays = {f.name: np.asarray(getattr(self, f.name)) for f in fields(self) if f.name != "target"}
        np.savez(
            Path(path),
            allow_pickle=False,
            **arrays,
            target_levels=np.asarray(self.target.levels),
            target_same=np.asarray(self.target.same),
            target_diff=np.asarray(self.target.diff),
        )

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingStats:
        """Read stats written by ``save``."""
        with np.load(path, allow_pickle=False) as data:
            target = SimilaritySummary(
                tuple(data["target_levels"].tolist()),
                tuple(data["target_same"].tolist()),
                tuple(data["target_diff"].tolist()),
            )
            return cls(
                mean=data["mean"],
                centre_basis=data["centre_basis"],
                centre_std=data["centre_std"],
                noise_basis=data["noise_basis"],
                noise_std=data["noise_std"],
                mean_scale=float(data["mean_scale"]),
                noise_scale=float(data["noise_scale"]),
                quality_log_std=float(data["quality_log_std"]),
                target=target,
            )


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _group(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort order of ``labels``, start of each identity's run in that order, and run lengths."""
    order = np.argsort(labels, kind="stable")
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    return order, starts, counts


def similarity_summary(
    vectors: np.ndarray,
    labels: np.ndarray,
    n_pairs: int = 20_000,
    seed: int = 0,
    levels: Sequence[float] = QUANTILE_LEVELS,
) -> SimilaritySummary:
    """Cosine-similarity quantiles of random same-identity and different-identity pairs.

    Same pairs: a random photo of an identity with two or more photos, paired with another photo of
    that identity (identities weigh by their photo count, not its square). Different pairs: two
    random photos with different labels.

    Args:
        vectors: float ``[N, d]`` embeddings (normalised here).
        labels: int ``[N]`` identity labels.
        n_pairs: pairs of each kind.
        seed: sampling seed.
        levels: quantile levels.
    """
    x = _normalise(np.asarray(vectors, dtype=np.float64))
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order, starts, counts = _group(labels)
    run_of = np.repeat(np.arange(starts.size), counts)
    eligible = np.flatnonzero(counts[run_of] >= 2)
    if eligible.size == 0 or starts.size < 2:
        raise ValueError("need at least one identity with two photos and two identities")
    first = rng.choice(eligible, size=n_pairs)
    run = run_of[first]
    other = starts[run] + rng.integers(0, counts[run] - 1)
    other += other >= first
    same = np.einsum("ij,ij->i", x[order[first]], x[order[other]])
    i = rng.integers(0, x.shape[0], size=n_pairs)
    j = rng.integers(0, x.shape[0], size=n_pairs)
    while np.any(clash := labels[i] == labels[j]):
        j[clash] = rng.integers(0, x.shape[0], size=int(clash.sum()))
    diff = np.einsum("ij,ij->i", x[i], x[j])
    lv = tuple(float(v) for v in levels)
    return SimilaritySummary(lv, tuple(np.quantile(same, lv).tolist()), tuple(np.quantile(diff, lv).tolist()))


def check_stats_match(
    real_summary: SimilaritySummary, synth_summary: SimilaritySummary, tol: MatchTolerance | None = None
) -> list[str]:
    """Compare two summaries level by level; return one message per quantile out of tolerance."""
    tol = tol or MatchTolerance()
    if real_summary.levels != synth_summary.levels:
        raise ValueError(f"summaries have different levels: {real_summary.levels} vs {synth_summary.levels}")
    problems = []
    for kind in ("same", "diff"):
        for level in real_summary.levels:
            real, synth = real_summary.quantile(kind, level), synth_summary.quantile(kind, level)
            limit = tol.median if level == 0.5 else tol.tails
            if abs(real - synth) > limit:
                problems.append(f"{kind} q{level:g}: real {real:.3f} vs synthetic {synth:.3f} (tol {limit})")
    return problems


def _principal_axes(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    values, vectors = values[::-1], vectors[:, ::-1]
    return vectors, np.sqrt(np.clip(values, 0.0, None))


def _moment_estimates(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of centres, between-identity covariance and within-identity covariance."""
    order, starts, counts = _group(labels)
    xs = x[order]
    sums = np.add.reduceat(xs, starts, axis=0)
    means = sums / counts[:, None]
    residuals = xs - np.repeat(means, counts, axis=0)
    dof = int((counts - 1).sum())
    if dof < 2:
        raise ValueError("need identities with two or more photos to estimate within-identity variation")
    within = residuals.T @ residuals / dof
    centre = means.mean(axis=0)
    between = np.cov(means, rowvar=False)
    # Each identity mean carries W / n_i of photo noise: remove it (the PLDA method of moments).
    between -= within * float(np.mean(1.0 / counts))
    return centre, between, within


def reference_stats(dim: int = 128, seed: int = 0) -> EmbeddingStats:
    """A stand-in for stats fitted on real embeddings, for benchmarks and tests without them.

    Shaped after mobilefacenet_128d on lfw_dev (6,922 photos, 3,554 people; YuNet + 5-point
    alignment), as fitted during development: mean of centres of norm 0.11; centre variance 0.61
    over ~80 effective dimensions (power-law spectrum ``r^-0.5``); photo variance 0.38 over ~100
    (``r^-0.3``); similarity quantiles in ``LFW_MOBILEFACENET_SAME`` and ``LFW_MOBILEFACENET_DIFF``.
    Random axes; calibrated to those quantiles like a fit.
    """
    rng = np.random.default_rng(seed)
    mean = _normalise(rng.standard_normal((1, dim)))[0] * 0.11
    centre_basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    noise_basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    ranks = np.arange(1, dim + 1)
    centre_std = ranks**-0.25 * np.sqrt(0.61 / np.sum(ranks**-0.5))
    noise_std = ranks**-0.15 * np.sqrt(0.38 / np.sum(ranks**-0.3))
    target = SimilaritySummary(QUANTILE_LEVELS, LFW_MOBILEFACENET_SAME, LFW_MOBILEFACENET_DIFF)
    stats = EmbeddingStats(mean, centre_basis, centre_std, noise_basis, noise_std, 1.0, 1.0, 0.0, target)
    return _calibrate(stats, target, seed)


def fit_embedding_stats(embeddings: np.ndarray, labels: np.ndarray, seed: int = 0) -> EmbeddingStats:
    """Fit the synthetic model to labelled real embeddings.

    Args:
        embeddings: float ``[N, d]`` embeddings (normalised here).
        labels: int ``[N]`` identity labels; some identities need two or more photos.
        seed: seed of the pair sampling and of the calibration simulations.
    """
    x = _normalise(np.asarray(embeddings, dtype=np.float64))
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {labels.shape}")
    centre, between, within = _moment_estimates(x, labels)
    centre_basis, centre_std = _principal_axes(between)
    noise_basis, noise_std = _principal_axes(within)
    target = similarity_summary(x, labels, n_pairs=CALIBRATION_PAIRS, seed=seed)
    stats = EmbeddingStats(centre, centre_basis, centre_std, noise_basis, noise_std, 1.0, 1.0, 0.0, target)
    return _calibrate(stats, target, seed)


def _bisect(fn: Callable[[float], float], target: float, low: float, high: float, increasing: bool) -> float:
    """Bisect for ``fn(v) == target`` in ``[low, high]``; geometric when ``low > 0``; clamps at the ends."""
    for _ in range(BISECTION_STEPS):
        mid = float(np.sqrt(low * high)) if low > 0 else (low + high) / 2
        if (fn(mid) < target) == increasing:
            low = mid
        else:
            high = mid
    return float(np.sqrt(low * high)) if low > 0 else (low + high) / 2


def _lower_spread(same: np.ndarray) -> float:
    """Sum of the gaps between the median and the ``SPREAD_LEVELS`` quantiles."""
    median = np.median(same)
    return float(sum(median - np.quantile(same, level) for level in SPREAD_LEVELS))


class _CalibrationDraws:
    """Fixed random draws for calibration: each trial rescales them instead of drawing anew.

    ``n`` identities with two photos each; different-identity pairs match photo 1 of identity ``i``
    with photo 2 of identity ``i + 1``.
    """

    def __init__(self, stats: EmbeddingStats, n: int, seed: int) -> None:
        rng = np.random.default_rng([seed, 4])
        d = stats.dim
        self.mean = stats.mean
        self.centres = rng.standard_normal((n, d)) @ (stats.centre_basis * stats.centre_std).T
        self.noise = [rng.standard_normal((n, d)) @ (stats.noise_basis * stats.noise_std).T for _ in range(2)]
        self.quality = [rng.standard_normal((n, 1)) for _ in range(2)]

    def medians(self, stats: EmbeddingStats) -> tuple[float, float, float]:
        """Same-person median, its lower spread (``SPREAD_LEVELS``), different-person median."""
        centres = stats.mean_scale * self.mean + self.centres
        photos = [
            _normalise(centres + stats.noise_scale * np.exp(stats.quality_log_std * q) * e)
            for e, q in zip(self.noise, self.quality, strict=True)
        ]
        same = np.einsum("ij,ij->i", photos[0], photos[1])
        diff = np.einsum("ij,ij->i", photos[0], np.roll(photos[1], 1, axis=0))
        return float(np.median(same)), _lower_spread(same), float(np.median(diff))


def _calibrate(stats: EmbeddingStats, target: SimilaritySummary, seed: int) -> EmbeddingStats:
    """Tune noise_scale, quality_log_std and mean_scale in turn, by simulation with fixed draws.

    Same-person median falls as noise grows; the gaps between the same-person median and its low
    quantiles grow with quality variation; the different-person median grows with the mean's weight.
    """
    draws = _CalibrationDraws(stats, CALIBRATION_IDENTITIES, seed)
    same_median = target.quantile("same", 0.5)
    same_spread = sum(same_median - target.quantile("same", level) for level in SPREAD_LEVELS)
    diff_median = target.quantile("diff", 0.5)

    def same_median_at(s: EmbeddingStats, value: float) -> float:
        return draws.medians(replace(s, noise_scale=value))[0]

    def same_spread_at(s: EmbeddingStats, value: float) -> float:
        return draws.medians(replace(s, quality_log_std=value))[1]

    def diff_median_at(s: EmbeddingStats, value: float) -> float:
        return draws.medians(replace(s, mean_scale=value))[2]

    for _ in range(CALIBRATION_ROUNDS):
        value = _bisect(partial(same_median_at, stats), same_median, 0.05, 20.0, increasing=False)
        stats = replace(stats, noise_scale=value)
        value = _bisect(partial(same_spread_at, stats), same_spread, 0.0, 1.5, increasing=True)
        stats = replace(stats, quality_log_std=value)
        value = _bisect(partial(diff_median_at, stats), diff_median, 0.0, 4.0, increasing=True)
        stats = replace(stats, mean_scale=value)
    log.info(
        "calibrated mean_scale=%.3f noise_scale=%.3f quality_log_std=%.3f",
        stats.mean_scale,
        stats.noise_scale,
        stats.quality_log_std,
    )
    return stats


def _counts(photos_per_identity: PhotoCounts, n_identities: int, rng: np.random.Generator) -> np.ndarray:
    """Photos per identity: a fixed count, or draws from a pmf over counts ``1 .. len(pmf)``."""
    if isinstance(photos_per_identity, int | np.integer):
        if photos_per_identity < 1:
            raise ValueError(f"photos_per_identity must be >= 1, got {photos_per_identity}")
        return np.full(n_identities, int(photos_per_identity), dtype=np.int64)
    pmf = np.asarray(photos_per_identity, dtype=np.float64)
    if pmf.ndim != 1 or pmf.size == 0 or np.any(pmf < 0) or not np.isclose(pmf.sum(), 1.0):
        raise ValueError("photos_per_identity must be an int or a pmf over counts 1..len(pmf) summing to 1")
    return rng.choice(np.arange(1, pmf.size + 1), size=n_identities, p=pmf).astype(np.int64)


def identity_centres(stats: EmbeddingStats, identities: np.ndarray, seed: int) -> np.ndarray:
    """Un-normalised centres of the given identity numbers, float32 ``[len(identities), d]``.

    Identity ``i`` is row ``i % CENTRE_BLOCK`` of block ``i // CENTRE_BLOCK``, drawn from its own seeded
    stream, so a centre does not depend on which other identities are asked for.
    """
    identities = np.asarray(identities, dtype=np.int64)
    out = np.empty((identities.size, stats.dim), dtype=np.float32)
    transform = (stats.centre_basis * stats.centre_std).T.astype(np.float32)
    blocks = identities // CENTRE_BLOCK
    for block in np.unique(blocks):
        rows = np.flatnonzero(blocks == block)
        z = np.random.default_rng([seed, CENTRE_STREAM, int(block)]).standard_normal(
            (CENTRE_BLOCK, stats.dim), dtype=np.float32
        )
        out[rows] = z[identities[rows] % CENTRE_BLOCK] @ transform
    out += (stats.mean_scale * stats.mean).astype(np.float32)
    return out


def _photos(stats: EmbeddingStats, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One normalised photo embedding per row of ``centres``."""
    transform = (stats.noise_basis * (stats.noise_std * stats.noise_scale)).T.astype(np.float32)
    noise = rng.standard_normal(centres.shape, dtype=np.float32) @ transform
    if stats.quality_log_std > 0:
        quality = np.exp(stats.quality_log_std * rng.standard_normal(centres.shape[0], dtype=np.float32))
        noise *= quality[:, None]
    noise += centres
    noise /= np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-12)
    return noise


def generate_gallery(
    stats: EmbeddingStats, n_identities: int, photos_per_identity: PhotoCounts, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings of ``n_identities`` synthetic people, identity by identity.

    Work arrays are bounded by ``GENERATE_ROWS`` rows, so peak memory stays near the output's size.

    Args:
        stats: fitted model.
        n_identities: people in the gallery, numbered ``0 .. n_identities - 1``.
        photos_per_identity: a count, or a pmf over counts ``1 .. len(pmf)``.
        seed: makes the gallery reproducible; centres depend only on (seed, identity).

    Returns:
        ``vectors`` float32 ``[N, d]`` and ``labels`` int64 ``[N]`` (grouped by identity).
    """
    if n_identities < 1:
        raise ValueError(f"n_identities must be >= 1, got {n_identities}")
    counts = _counts(photos_per_identity, n_identities, np.random.default_rng([seed, GALLERY_STREAM]))
    labels = np.repeat(np.arange(n_identities, dtype=np.int64), counts)
    vectors = np.empty((labels.size, stats.dim), dtype=np.float32)
    per_chunk = max(1, GENERATE_ROWS // int(counts.max()))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for chunk, first in enumerate(range(0, n_identities, per_chunk)):
        last = min(n_identities, first + per_chunk)
        centres = identity_centres(stats, np.arange(first, last), seed)
        rng = np.random.default_rng([seed, GALLERY_STREAM, chunk])
        photos = _photos(stats, np.repeat(centres, counts[first:last], axis=0), rng)
        vectors[offsets[first] : offsets[last]] = photos
    return vectors, labels


def generate_probes(
    stats: EmbeddingStats,
    n_gallery_identities: int,
    n_mated: int,
    n_non_mated: int,
    seed: int,
    probe_seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probes for a gallery made by ``generate_gallery(stats, n_gallery_identities, ..., seed)``.

    Mated probes are new photos of random gallery identities; non-mated probes are photos of people
    numbered from ``n_gallery_identities`` on, who are in no such gallery.

    Returns:
        ``vectors`` float32 ``[n_mated + n_non_mated, d]``, ``labels`` int64 (identity numbers) and
        ``mated`` bool, mated probes first.
    """
    if min(n_mated, n_non_mated) < 0 or n_gallery_identities < 1:
        raise ValueError("probe counts must be >= 0 and the gallery must have identities")
    rng = np.random.default_rng([probe_seed, seed, 3])
    mated_ids = rng.integers(0, n_gallery_identities, size=n_mated)
    new_ids = np.arange(n_gallery_identities, n_gallery_identities + n_non_mated)
    labels = np.concatenate([mated_ids, new_ids]).astype(np.int64)
    vectors = np.empty((labels.size, stats.dim), dtype=np.float32)
    for start in range(0, labels.size, GENERATE_ROWS):
        part = labels[start : start + GENERATE_ROWS]
        vectors[start : start + part.size] = _photos(stats, identity_centres(stats, part, seed), rng)
    return vectors, labels, np.arange(labels.size) < n_mated
