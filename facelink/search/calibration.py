"""Score calibration: map raw comparison scores to false-match rates.

A :class:`Calibration` turns a similarity score ``s`` into ``FMR(s) = P(non-mate score >= s)``, the
per-comparison false-match rate, and from it the false-positive identification rate of a 1:N search
against a gallery of ``N`` identities, ``FPIR(s) = 1 - (1 - FMR(s))^N``. Thresholds are read off the
inverse maps, so every operating point in the pipeline comes from measured non-mate scores.

The bulk of ``FMR`` is the empirical survival function of the non-mate scores. Where fewer than
``tail_min_count`` non-mates lie above a score, the empirical estimate is too noisy (and zero past the
largest sample), so a generalised Pareto distribution (peaks over threshold) fitted to the top
exceedances takes over and extrapolates to the 1e-6..1e-8 FMRs that 1:N against millions needs.
Extrapolated rates are model estimates, not measurements: below about ``1 / n_nonmate`` the GPD is
all there is, and its error grows the further it is pushed.

The fitted map is stored as a monotone table (score grid -> log10 FMR) so lookups are one vectorised
``np.interp``; a calibration is a versioned JSON artefact whose ``version`` is the hash of its content.

The per-comparison FMR pushed through independence to a gallery of N is not what a search does: scores of
one probe against many faces are correlated, and the tail beyond the measured pairs is a fit. A calibration
of format 2 therefore also carries an :class:`facelink.search.fpir.FpirModel`, FPIR measured on searches against
galleries of many sizes; :meth:`Calibration.fpir` and :meth:`Calibration.score_at_fpir` use it, and match and
dedup refuse a calibration without it (:func:`load_calibration`). Precision: the empirical FMR is supported
down to :attr:`Calibration.fmr_floor`, the FPIR down to the model's floor; below them an estimate is "below
the floor, beyond the measured range" (:func:`facelink.rates.format_rate`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from facelink.config import Config
from facelink.errors import InputError
from facelink.lake.fs import LakeFs, join, lake_fs, lake_uri
from facelink.search.fpir import FpirModel

logger = logging.getLogger(__name__)

FORMAT = "facelink.calibration/2"
#: Artefacts without a measured FPIR model (read, never written by jobs.calibrate any more).
FORMAT_V1 = "facelink.calibration/1"
COSINE_RANGE = (-1.0, 1.0)
# FMRs below 1e-15 are meaningless for any gallery we could hold; the floor keeps the table finite
# (JSON has no -inf) and bounds the fused -log10 FMR score.
LOG10_FMR_FLOOR = -15.0
DEFAULT_GRID_SIZE = 4001
# 0.5% of non-mates (1000 of 200k) as GPD exceedances: on Gaussian and random-direction cosine
# tails, larger fractions bias the extrapolation (the GPD limit is approached slowly), smaller ones
# inflate its variance.
DEFAULT_TAIL_FRACTION = 0.005
DEFAULT_TAIL_MIN_COUNT = 100
MIN_TAIL_EXCEEDANCES = 50
MIN_NONMATE = 2 * MIN_TAIL_EXCEEDANCES

FloatArray = NDArray[np.float64]
FusionMethod = Literal["sum", "mean"]


@dataclass(frozen=True, eq=False)
class Calibration:
    """A fitted score -> FMR map, with its provenance.

    Instances compare by identity; use :attr:`version` to compare content.

    Attributes:
        model_id: Embedding model (or fusion) the scores come from.
        fitted_at: ISO-8601 UTC time of the fit.
        source: Human description of the calibration data (data set, split, pairing rule).
        n_nonmate: Number of non-mate scores fitted.
        n_mate: Number of mate scores fitted.
        data_digest: sha256 of the sorted non-mate and mate scores.
        tail_threshold: GPD threshold ``u`` (midpoint of the k-th and k+1-th largest non-mates).
        tail_shape: GPD shape ``xi`` (negative: bounded tail).
        tail_scale: GPD scale ``sigma``.
        tail_exceedances: Number ``k`` of non-mates above ``tail_threshold`` used for the GPD fit.
        tail_switch_score: Scores above this use the GPD, at or below it the empirical survival.
        score_grid: Strictly increasing scores, shape [G].
        log10_fmr_table: Non-increasing log10 FMR at each grid score, shape [G], >= LOG10_FMR_FLOOR.
        fnmr_table: Non-decreasing fraction of mate scores below each grid score, shape [G].
        fpir_model: FPIR measured on 1:N searches and its model in gallery size (None in format-1 artefacts).
    """

    model_id: str
    fitted_at: str
    source: str
    n_nonmate: int
    n_mate: int
    data_digest: str
    tail_threshold: float
    tail_shape: float
    tail_scale: float
    tail_exceedances: int
    tail_switch_score: float
    score_grid: FloatArray = field(repr=False)
    log10_fmr_table: FloatArray = field(repr=False)
    fnmr_table: FloatArray = field(repr=False)
    fpir_model: FpirModel | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("score_grid", "log10_fmr_table", "fnmr_table"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1 or arr.size < 2 or not np.isfinite(arr).all():
                raise ValueError(f"Calibration.{name} must be a finite 1-D array of at least 2 values")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        grid, table, fnmr = self.score_grid, self.log10_fmr_table, self.fnmr_table
        if not (grid.size == table.size == fnmr.size):
            raise ValueError(
                f"Calibration tables differ in length: score_grid {grid.size}, "
                f"log10_fmr_table {table.size}, fnmr_table {fnmr.size}"
            )
        if np.any(np.diff(grid) <= 0):
            raise ValueError("Calibration.score_grid must be strictly increasing")
        if np.any(np.diff(table) > 0) or table[0] > 0 or table[-1] < LOG10_FMR_FLOOR:
            raise ValueError(f"Calibration.log10_fmr_table must be non-increasing in [{LOG10_FMR_FLOOR}, 0]")
        if np.any(np.diff(fnmr) < 0) or fnmr[0] < 0 or fnmr[-1] > 1:
            raise ValueError("Calibration.fnmr_table must be non-decreasing in [0, 1]")

    def log10_fmr(self, scores: ArrayLike) -> FloatArray:
        """Return log10 FMR of each score (same shape; clamped to the grid's ends)."""
        return np.interp(np.asarray(scores, dtype=np.float64), self.score_grid, self.log10_fmr_table)

    def fmr(self, scores: ArrayLike) -> FloatArray:
        """Return FMR(s) = P(non-mate score >= s) for each score (same shape)."""
        return np.power(10.0, self.log10_fmr(scores))

    def fnmr(self, scores: ArrayLike) -> FloatArray:
        """Return FNMR(s) = P(mate score < s), the empirical rate from the mate scores (same shape)."""
        return np.interp(np.asarray(scores, dtype=np.float64), self.score_grid, self.fnmr_table)

    def score_at_fmr(self, target_fmr: float) -> float:
        """Return the lowest score whose FMR is at most ``target_fmr`` (accept when score >= it).

        Raises:
            ValueError: ``target_fmr`` is not in (0, 1], or is below the FMR at the top of the grid.
        """
        lt = math.log10(_check_rate(target_fmr, "target_fmr"))
        grid, table = self.score_grid, self.log10_fmr_table
        if lt >= table[0]:
            return float(grid[0])
        if lt < table[-1]:
            raise ValueError(
                f"target_fmr {target_fmr:g} is below the calibrated FMR at score {grid[-1]:g} "
                f"({10 ** table[-1]:.3g}); no threshold in range reaches it"
            )
        i = int(np.searchsorted(-table, -lt, side="left"))
        x0, x1, y0, y1 = grid[i - 1], grid[i], table[i - 1], table[i]
        return float(x0 + (y0 - lt) * (x1 - x0) / (y0 - y1))

    @property
    def fmr_floor(self) -> float:
        """The smallest FMR measured on non-mate pairs (where the fitted tail takes over); below: a fit."""
        return float(10 ** self.log10_fmr(self.tail_switch_score))

    @property
    def fpir_floor(self) -> float | None:
        """The smallest FPIR measured on searches (None without an FPIR model)."""
        return self.fpir_model.floor if self.fpir_model is not None else None

    def with_fpir_model(self, model: FpirModel) -> Calibration:
        """A copy carrying ``model`` (a new version)."""
        return replace(self, fpir_model=model)

    def fpir(self, scores: ArrayLike, gallery_size: int) -> FloatArray:
        """Return the estimated FPIR of each score for a gallery of N faces (same shape as scores).

        With an FPIR model, the measured model (clamped to its measured levels). Without one (format 1), the
        independence formula FPIR(s) = 1 - (1 - FMR(s))^N, which match and dedup no longer use.
        """
        n = _check_gallery_size(gallery_size)
        if self.fpir_model is not None:
            return self.fpir_model.fpir(scores, n)
        with np.errstate(divide="ignore"):
            return -np.expm1(n * np.log1p(-self.fmr(scores)))

    def score_at_fpir(self, target_fpir: float, gallery_size: int) -> float:
        """Return the score threshold of ``target_fpir`` against ``gallery_size`` faces.

        With an FPIR model, the model's threshold; without one, the lowest score whose independence FPIR
        is at most the target.

        Raises:
            ValueError: ``target_fpir`` is not in (0, 1], ``gallery_size`` is not a positive integer, or
                (without a model) the per-comparison FMR needed is below the calibrated range.
        """
        fpir = _check_rate(target_fpir, "target_fpir")
        n = _check_gallery_size(gallery_size)
        if self.fpir_model is not None:
            return self.fpir_model.score_at_fpir(fpir, n)
        with np.errstate(divide="ignore"):
            per_comparison = float(-np.expm1(np.log1p(-fpir) / n))
        return self.score_at_fmr(per_comparison)

    def to_dict(self) -> dict[str, Any]:
        """Return the artefact as a JSON-ready dict, ``version`` included."""
        content = self._content()
        return {"version": _content_hash(content), **content}

    def to_json(self) -> str:
        """Return the artefact as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @cached_property
    def version(self) -> str:
        """Content hash (16 hex digits of sha256 over the canonical JSON content)."""
        return _content_hash(self._content())

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """Parse an artefact written by :meth:`to_json`, refusing a wrong format or a version mismatch.

        Raises:
            ValueError: The text is not a calibration artefact, lacks fields, or its content does not
                hash to its recorded version.
        """
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"calibration artefact is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") not in (FORMAT, FORMAT_V1):
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(f"calibration artefact format must be {FORMAT!r}, got {found!r}")
        try:
            tail = doc["tail"]
            fpir = doc.get("fpir")
            calibration = cls(
                model_id=str(doc["model_id"]),
                fitted_at=str(doc["fitted_at"]),
                source=str(doc["source"]),
                n_nonmate=int(doc["n_nonmate"]),
                n_mate=int(doc["n_mate"]),
                data_digest=str(doc["data_digest"]),
                tail_threshold=float(tail["threshold"]),
                tail_shape=float(tail["shape"]),
                tail_scale=float(tail["scale"]),
                tail_exceedances=int(tail["exceedances"]),
                tail_switch_score=float(tail["switch_score"]),
                score_grid=np.asarray(doc["score_grid"], dtype=np.float64),
                log10_fmr_table=np.asarray(doc["log10_fmr"], dtype=np.float64),
                fnmr_table=np.asarray(doc["fnmr"], dtype=np.float64),
                fpir_model=FpirModel.from_dict(fpir) if fpir is not None else None,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"calibration artefact is missing or mistypes field {exc}") from exc
        if calibration.version != doc.get("version"):
            raise ValueError(
                f"calibration artefact version {doc.get('version')!r} does not match its content "
                f"({calibration.version!r}): the file was edited or corrupted"
            )
        return calibration

    def save(self, path: str | Path, lake: LakeFs | None = None) -> str | Path:
        """Write the artefact to ``path`` (a local path or lake URI), atomically for readers, and return ``path``.

        Goes through the lake's filesystem seam: ``lake`` carries the object-store settings of an ``s3a://``
        path (default: local files only).
        """
        (lake or LakeFs()).write_text(str(path), self.to_json())
        logger.info("saved calibration %s (version %s) to %s", self.model_id, self.version, path)
        return path

    @classmethod
    def load(cls, path: str | Path, lake: LakeFs | None = None) -> Calibration:
        """Read an artefact written by :meth:`save` (see :meth:`from_json` for the checks)."""
        return cls.from_json((lake or LakeFs()).read_text(str(path)))

    def _content(self) -> dict[str, Any]:
        extra = {"fpir": self.fpir_model.to_dict()} if self.fpir_model is not None else {}
        return {
            "format": FORMAT if self.fpir_model is not None else FORMAT_V1,
            **extra,
            "model_id": self.model_id,
            "fitted_at": self.fitted_at,
            "source": self.source,
            "n_nonmate": self.n_nonmate,
            "n_mate": self.n_mate,
            "data_digest": self.data_digest,
            "tail": {
                "threshold": self.tail_threshold,
                "shape": self.tail_shape,
                "scale": self.tail_scale,
                "exceedances": self.tail_exceedances,
                "switch_score": self.tail_switch_score,
            },
            "score_grid": self.score_grid.tolist(),
            "log10_fmr": self.log10_fmr_table.tolist(),
            "fnmr": self.fnmr_table.tolist(),
        }


def fit_calibration(
    nonmate_scores: ArrayLike,
    mate_scores: ArrayLike,
    model_id: str,
    source: str,
    tail_fraction: float = DEFAULT_TAIL_FRACTION,
    tail_min_count: int = DEFAULT_TAIL_MIN_COUNT,
    grid: ArrayLike | None = None,
    score_range: tuple[float, float] = COSINE_RANGE,
    fitted_at: str | None = None,
) -> Calibration:
    """Fit FMR (empirical bulk + GPD tail) and FNMR maps from labelled comparison scores.

    Args:
        nonmate_scores: Scores of different-identity comparisons, shape [n], n >= MIN_NONMATE.
        mate_scores: Scores of same-identity comparisons, shape [m], m >= 1.
        model_id: Model the scores come from.
        source: Description of the calibration data.
        tail_fraction: Fraction of non-mates (at least MIN_TAIL_EXCEEDANCES, at most half) above the
            GPD threshold.
        tail_min_count: The empirical survival is used while at least this many non-mates (capped at
            the exceedance count) lie at or above the score; the GPD beyond.
        grid: Strictly increasing score grid inside ``score_range``; default
            DEFAULT_GRID_SIZE evenly spaced points spanning it.
        score_range: Valid score interval; cosine by default. Fused or normalised scores need theirs.
        fitted_at: ISO time to record; now (UTC) by default.

    Raises:
        ValueError: Empty, non-finite or out-of-range scores, too few non-mates, or a bad parameter.
    """
    lo, hi = _check_range(score_range)
    nonmate = np.sort(_as_scores(nonmate_scores, "nonmate_scores", (lo, hi)))
    mate = np.sort(_as_scores(mate_scores, "mate_scores", (lo, hi)))
    if nonmate.size < MIN_NONMATE:
        raise ValueError(f"nonmate_scores needs at least {MIN_NONMATE} values, got {nonmate.size}")
    if not 0.0 < tail_fraction < 0.5:
        raise ValueError(f"tail_fraction must be in (0, 0.5), got {tail_fraction}")
    if tail_min_count < 1:
        raise ValueError(f"tail_min_count must be >= 1, got {tail_min_count}")
    score_grid = _check_grid(grid, lo, hi)

    tail, table = _fit_log10_fmr(nonmate, score_grid, tail_fraction, tail_min_count)
    fnmr_table = np.searchsorted(mate, score_grid, side="left") / mate.size

    calibration = Calibration(
        model_id=model_id,
        fitted_at=fitted_at or datetime.now(UTC).isoformat(timespec="seconds"),
        source=source,
        n_nonmate=int(nonmate.size),
        n_mate=int(mate.size),
        data_digest=_digest(nonmate, mate),
        tail_threshold=tail.threshold,
        tail_shape=tail.shape,
        tail_scale=tail.scale,
        tail_exceedances=tail.exceedances,
        tail_switch_score=tail.switch_score,
        score_grid=score_grid,
        log10_fmr_table=table,
        fnmr_table=fnmr_table,
    )
    logger.info(
        "fitted calibration %s: %d non-mates, %d mates, GPD on %d exceedances above %.4f "
        "(shape %.3f, scale %.4g), version %s",
        *(model_id, nonmate.size, mate.size, tail.exceedances, tail.threshold),
        *(tail.shape, tail.scale, calibration.version),
    )
    return calibration


def band_for(fpir_values: ArrayLike, bands: Mapping[str, float]) -> NDArray[np.object_]:
    """Label each FPIR with the tightest band it meets, or None.

    Args:
        fpir_values: FPIRs, any shape.
        bands: Band name -> maximum FPIR, e.g. ``{"strong": 0.001, "possible": 0.01}``.

    Returns:
        Object array of the input's shape holding band names or None (also for NaN).

    Raises:
        ValueError: ``bands`` is empty or a limit is not in (0, 1].
    """
    if not bands:
        raise ValueError("bands must name at least one band")
    for name, limit in bands.items():
        _check_rate(limit, f"bands[{name!r}]")
    values = np.asarray(fpir_values, dtype=np.float64)
    labels = np.full(values.shape, None, dtype=object)
    for name, limit in sorted(bands.items(), key=lambda item: item[1], reverse=True):
        labels[values <= limit] = name
    return labels


def fuse_scores_fmr(
    score_lists: Sequence[ArrayLike],
    calibrations: Sequence[Calibration],
    method: FusionMethod = "sum",
) -> FloatArray:
    """Fuse several models' scores for the same comparisons as the sum (or mean) of -log10 FMR.

    Each model's score becomes the evidence ``-log10 FMR_m(s_m)`` (0 for chance, up to
    ``-LOG10_FMR_FLOOR``); summing treats the models' non-mate scores as independent. The fused score
    is not an FMR: calibrate it with :func:`fit_fused_calibration`.

    Args:
        score_lists: One score array per model, all the same shape.
        calibrations: One calibration per model, in the same order.
        method: "sum" or "mean" of the per-model evidence.

    Raises:
        ValueError: Counts or shapes differ, or ``method`` is unknown.
    """
    if len(score_lists) != len(calibrations) or not calibrations:
        raise ValueError(
            f"need one calibration per score list, got {len(score_lists)} lists and "
            f"{len(calibrations)} calibrations"
        )
    if method not in ("sum", "mean"):
        raise ValueError(f"method must be 'sum' or 'mean', got {method!r}")
    arrays = [np.asarray(scores, dtype=np.float64) for scores in score_lists]
    shapes = {arr.shape for arr in arrays}
    if len(shapes) != 1:
        raise ValueError(f"score lists must share one shape, got {sorted(shapes)}")
    evidence = np.zeros(arrays[0].shape)
    for calibration, arr in zip(calibrations, arrays, strict=True):
        evidence -= calibration.log10_fmr(arr)
    return evidence / len(arrays) if method == "mean" else evidence


def fused_score_range(n_models: int, method: FusionMethod = "sum") -> tuple[float, float]:
    """Return the interval a score from :func:`fuse_scores_fmr` over ``n_models`` models lies in."""
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    return 0.0, -LOG10_FMR_FLOOR * (n_models if method == "sum" else 1)


def fit_fused_calibration(
    nonmate_score_lists: Sequence[ArrayLike],
    mate_score_lists: Sequence[ArrayLike],
    calibrations: Sequence[Calibration],
    model_id: str,
    source: str,
    method: FusionMethod = "sum",
    **fit_kwargs: Any,
) -> Calibration:
    """Fuse per-model non-mate and mate scores and fit a calibration of the fused score.

    Use comparisons disjoint from those the per-model calibrations were fitted on, so the fused tail
    is not measured on the data that shaped its inputs.

    Args:
        nonmate_score_lists: Per model, the non-mate comparison scores (same comparisons, same order).
        mate_score_lists: Per model, the mate comparison scores.
        calibrations: Per-model calibrations.
        model_id: Identifier for the fusion, e.g. ``"fuse:arcface+adaface"``.
        source: Description of the calibration data.
        method: "sum" or "mean" (see :func:`fuse_scores_fmr`).
        **fit_kwargs: Passed to :func:`fit_calibration` (not ``score_range``).
    """
    nonmate = fuse_scores_fmr(nonmate_score_lists, calibrations, method)
    mate = fuse_scores_fmr(mate_score_lists, calibrations, method)
    score_range = fused_score_range(len(calibrations), method)
    return fit_calibration(nonmate, mate, model_id, source, score_range=score_range, **fit_kwargs)


def cohort_normalise(
    scores: ArrayLike, cohort_scores: ArrayLike, top: int = 50, eps: float = 1e-6
) -> FloatArray:
    """Z-normalise each probe's scores against its highest cohort scores.

    A probe that looks like many people (a low-quality or generic face) scores high against everyone;
    subtracting the mean and dividing by the spread of its ``top`` best impostor-cohort scores puts
    probes on one scale. The result is not a cosine: calibrate it with an explicit ``score_range``.

    Args:
        scores: Probe-vs-candidate scores, shape [Q, K].
        cohort_scores: Probe-vs-cohort scores, shape [Q, C], C >= top; the cohort holds no mates.
        top: How many of each probe's highest cohort scores to use.
        eps: Floor on the cohort standard deviation.

    Returns:
        Normalised scores, shape [Q, K], float64.

    Raises:
        ValueError: Shapes do not match, ``top`` is out of range, or values are not finite.
    """
    s = np.asarray(scores, dtype=np.float64)
    c = np.asarray(cohort_scores, dtype=np.float64)
    if s.ndim != 2 or c.ndim != 2 or s.shape[0] != c.shape[0]:
        raise ValueError(f"scores [Q, K] and cohort_scores [Q, C] must share Q, got {s.shape} and {c.shape}")
    if not 1 <= top <= c.shape[1]:
        raise ValueError(f"top must be in [1, {c.shape[1]}] (the cohort size), got {top}")
    if not (np.isfinite(s).all() and np.isfinite(c).all()):
        raise ValueError("scores and cohort_scores must be finite")
    best = np.partition(c, c.shape[1] - top, axis=1)[:, c.shape[1] - top :]
    mean = best.mean(axis=1, keepdims=True)
    std = np.maximum(best.std(axis=1, keepdims=True), eps)
    return (s - mean) / std


class _TailFit(NamedTuple):
    threshold: float
    shape: float
    scale: float
    exceedances: int
    switch_score: float


def _fit_log10_fmr(
    nonmate_sorted: FloatArray, grid: FloatArray, tail_fraction: float, tail_min_count: int
) -> tuple[_TailFit, FloatArray]:
    """Return the GPD tail fit and the monotone log10 FMR table on ``grid`` (scores ascending)."""
    n = nonmate_sorted.size
    descending = nonmate_sorted[::-1]
    k = int(np.clip(round(tail_fraction * n), MIN_TAIL_EXCEEDANCES, n // 2))
    threshold = 0.5 * float(descending[k - 1] + descending[k])
    shape, scale = _fit_gpd(descending[:k] - threshold)
    tail = _TailFit(threshold, shape, scale, k, float(descending[min(tail_min_count, k) - 1]))

    counts = n - np.searchsorted(nonmate_sorted, grid, side="left")
    with np.errstate(divide="ignore"):
        empirical = np.log10(counts / n)
        log_sf = stats.genpareto.logsf(grid - threshold, shape, 0.0, scale)
        extrapolated = (math.log(k / n) + log_sf) / math.log(10)
    table = np.where(grid <= tail.switch_score, empirical, extrapolated)
    return tail, np.minimum.accumulate(np.clip(table, LOG10_FMR_FLOOR, 0.0))


def _fit_gpd(exceedances: FloatArray) -> tuple[float, float]:
    """Fit a GPD (location 0) to non-negative exceedances by maximum likelihood; exponential fallback."""
    mean = float(exceedances.mean())
    shape, scale = 0.0, max(mean, float(np.finfo(np.float64).tiny))
    if np.ptp(exceedances) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fitted_shape, _, fitted_scale = stats.genpareto.fit(exceedances, floc=0.0)
        if np.isfinite(fitted_shape) and np.isfinite(fitted_scale) and fitted_scale > 0:
            shape, scale = float(fitted_shape), float(fitted_scale)
        else:
            logger.warning("GPD fit failed on %d exceedances; using an exponential tail", exceedances.size)
    if shape < -0.5:
        logger.warning("GPD shape %.3f < -0.5: the tail fit is unreliable (very short tail)", shape)
    return shape, scale


def _as_scores(values: ArrayLike, name: str, score_range: tuple[float, float]) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} has {int(bad.sum())} non-finite values (first at index {first})")
    lo, hi = score_range
    outside = (arr < lo) | (arr > hi)
    if outside.any():
        raise ValueError(
            f"{name} has {int(outside.sum())} values outside [{lo:g}, {hi:g}] "
            f"(min {arr.min():.6g}, max {arr.max():.6g})"
        )
    return arr


def _check_range(score_range: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in score_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"score_range must be finite with low < high, got {score_range}")
    return lo, hi


def _check_grid(grid: ArrayLike | None, lo: float, hi: float) -> FloatArray:
    if grid is None:
        return np.linspace(lo, hi, DEFAULT_GRID_SIZE)
    arr = np.asarray(grid, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2 or not np.isfinite(arr).all() or np.any(np.diff(arr) <= 0):
        raise ValueError("grid must be a finite, strictly increasing 1-D array of at least 2 scores")
    if arr[0] < lo or arr[-1] > hi:
        raise ValueError(f"grid [{arr[0]:g}, {arr[-1]:g}] must lie inside score_range [{lo:g}, {hi:g}]")
    return arr


def _check_rate(value: float, name: str) -> float:
    rate = float(value)
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return rate


def _check_gallery_size(gallery_size: int) -> int:
    if isinstance(gallery_size, bool) or not isinstance(gallery_size, int | np.integer) or gallery_size < 1:
        raise ValueError(f"gallery_size must be a positive integer, got {gallery_size!r}")
    return int(gallery_size)


def _digest(nonmate_sorted: FloatArray, mate_sorted: FloatArray) -> str:
    h = hashlib.sha256()
    for arr in (nonmate_sorted, mate_sorted):
        h.update(np.int64(arr.size).tobytes())
        h.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
    return h.hexdigest()


def _content_hash(content: Mapping[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def calibration_dir(cfg: Config) -> str:
    """``<lake>/calibration``: every calibration artefact of the lake (a lake URI)."""
    return lake_uri(cfg, "calibration")


def calibration_path(cfg: Config, model_id: str) -> str:
    """Where the calibration in force of ``model_id`` lives (``match.calibration_path`` overrides)."""
    if cfg.match.calibration_path:
        return cfg.resolve(cfg.match.calibration_path)
    return join(calibration_dir(cfg), f"{model_id.replace('@', '_')}.json")


def band_levels(cfg: Config) -> dict[str, float]:
    """Every FPIR level match and dedup use, by band name (match's name wins where both name a band)."""
    levels = {**cfg.dedup.bands, **cfg.match.bands}
    if cfg.match.target_fpir not in levels.values():
        levels["target"] = cfg.match.target_fpir
    return levels


def load_calibration(cfg: Config, model_id: str, require_fpir: bool = True) -> Calibration:
    """The calibration in force for ``model_id``.

    Args:
        cfg: Configuration (lake root, ``match.calibration_path``).
        model_id: The recogniser's model id.
        require_fpir: Refuse a calibration without a measured FPIR model (match and dedup turn band FPIRs
            into thresholds with it, never with the independence formula).

    Raises:
        InputError: None was fitted yet, it belongs to another model, or it lacks the FPIR model (fitted
            before FPIR was measured: run ``jobs.calibrate`` again).
    """
    path = calibration_path(cfg, model_id)
    lake = lake_fs(cfg)
    if not lake.is_file(path):
        raise InputError(f"no calibration for {model_id} at {path}: run `python -m jobs.calibrate` first")
    cal = Calibration.load(path, lake)
    if cal.model_id != model_id:
        raise InputError(f"{path} calibrates {cal.model_id}, not {model_id}")
    if require_fpir and cal.fpir_model is None:
        raise InputError(f"{path} has no measured FPIR model (format {FORMAT_V1}): run `python -m jobs.calibrate` "
                         "again to measure FPIR on searches before thresholds are set from it")
    return cal
