"""FPIR of 1:N searches, measured where the bands are used, and its model in gallery size.

A band is an FPIR level: the share of searches for someone who is not in the gallery (non-mated searches)
that return a candidate at or above the band's score. That share is measured here directly, not derived from
the per-comparison FMR through an independence assumption: every labelled photo searches galleries of N
faces of other people (leave-one-identity-out), and its top score is kept. The score threshold of FPIR ``p``
at gallery size N is the lowest score that at most a share ``p`` of those top scores reach.

Galleries are drawn from a pool holding at most ``per_identity`` photos of each person (an archive holds one
or two photos of most people; LFW holds 530 of one man), shuffled once per repeat; each search's gallery of
size N is the first N faces of other people in that order, so one pass gives every size.

The model (:class:`FpirModel`) is, for each measured FPIR level, a straight line of the threshold fitted to
the measured thresholds against a function of N: ``log10 N`` (the top of N draws from an exponential-like
tail rises linearly in log N) or ``sqrt(ln N)`` (from a Gaussian-like tail, which slows down). The data choose:
the form whose lines, fitted on galleries up to an eighth of the largest, best predict the largest measured
gallery's thresholds. Between levels the model interpolates in log FPIR. Beyond the largest measured N the
lines are extrapolated, which the run records say; below the smallest measured FPIR level (``floor``: the
level that at least ``MIN_EVENTS`` searches reach) nothing is measured, and estimates there are reported as
"below the floor, beyond the measured range".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from facelink.metrics import threshold_at_fmr

log = logging.getLogger(__name__)

#: FPIR levels measured when the data has enough searches for them (see MIN_EVENTS).
FPIR_LEVELS = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
#: A level is measured only where at least this many searches are expected to reach its threshold: with 10
#: events the relative standard error of the rate is about 1/sqrt(10), 32%.
MIN_EVENTS = 10
#: Smallest gallery used in the line fit: below ~100 faces the top score is dominated by the probe itself.
FIT_MIN_SIZE = 100
DEFAULT_REPEATS = 4
DEFAULT_PER_IDENTITY = 2
#: Probes scored per block (a block's score matrix is block x pool float32).
PROBE_BLOCK = 1024

FloatArray = NDArray[np.float64]

#: How the threshold of a level moves with gallery size N: a straight line in ``log10 N`` (the top of N draws
#: from an exponential-like tail) or in ``sqrt(ln N)`` (from a Gaussian-like tail, which slows down).
FORMS = ("log", "sqrt_log")


def size_axis(sizes: ArrayLike, form: str) -> FloatArray:
    """The abscissa of gallery sizes under ``form`` (see :data:`FORMS`)."""
    n = np.asarray(sizes, dtype=np.float64)
    if form == "log":
        return np.log10(n)
    if form == "sqrt_log":
        return np.sqrt(np.log(n))
    raise ValueError(f"unknown FPIR model form {form!r}; expected one of {FORMS}")


def gallery_sizes(n_max: int, n_min: int = FIT_MIN_SIZE) -> tuple[int, ...]:
    """Geometric sizes (doubling) from ``n_min`` up to ``n_max``, ``n_max`` included."""
    if n_max < n_min:
        return (int(n_max),) if n_max >= 1 else ()
    sizes = []
    n = n_min
    while n < n_max:
        sizes.append(n)
        n *= 2
    if sizes and n_max - sizes[-1] < sizes[-1] * 0.2:
        sizes.pop()
    return (*sizes, int(n_max))


def capped_pool(identity: ArrayLike, per_identity: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Indices of at most ``per_identity`` photos of each identity, drawn at random (sorted)."""
    ident = np.asarray(identity)
    order = rng.permutation(ident.size)
    _, inverse = np.unique(ident[order], return_inverse=True)
    rank = np.zeros(ident.size, dtype=np.int64)
    seen: dict[int, int] = {}
    for pos, code in enumerate(inverse):
        rank[pos] = seen.get(int(code), 0)
        seen[int(code)] = rank[pos] + 1
    return np.sort(order[rank < per_identity])


def top_nonmate_scores(
    x_probe: np.ndarray, probe_identity: ArrayLike, x_pool: np.ndarray, pool_identity: ArrayLike,
    sizes: Sequence[int], rng: np.random.Generator, repeats: int = DEFAULT_REPEATS,
) -> FloatArray:
    """Top score of each probe searching galleries of each size drawn from the pool without its own person.

    Args:
        x_probe: float [Q, d] unit probe embeddings.
        probe_identity: [Q] identity of each probe.
        x_pool: float [P, d] unit gallery-pool embeddings (the probes may be among them).
        pool_identity: [P] identity of each pool face.
        sizes: Gallery sizes N (each at most P minus the probe's own photos in the pool).
        rng: Draws one shuffle of the pool per repeat.
        repeats: Galleries drawn per probe and size.

    Returns:
        float64 [repeats * Q, len(sizes)]: row ``r * Q + q`` is probe q in repeat r; NaN where the pool holds
        fewer than N faces of other people.
    """
    pid, gid = np.asarray(probe_identity), np.asarray(pool_identity)
    q, p = x_probe.shape[0], x_pool.shape[0]
    wanted = np.asarray(sizes, dtype=np.int64)
    out = np.full((repeats * q, wanted.size), np.nan)
    xq = np.ascontiguousarray(x_probe, dtype=np.float32)
    for r in range(repeats):
        perm = rng.permutation(p)
        xb = np.ascontiguousarray(x_pool[perm], dtype=np.float32)
        ib = gid[perm]
        for start in range(0, q, PROBE_BLOCK):
            stop = min(q, start + PROBE_BLOCK)
            s = xq[start:stop] @ xb.T
            other = pid[start:stop, None] != ib[None, :]
            s[~other] = -np.inf
            running_max = np.maximum.accumulate(s, axis=1)
            count = np.cumsum(other, axis=1, dtype=np.int32)
            rows = np.arange(stop - start)
            for j, n in enumerate(wanted):
                pos = (count < n).sum(axis=1)
                ok = pos < p
                out[r * q + start + rows[ok], j] = running_max[rows[ok], pos[ok]]
    return out


@dataclass(frozen=True)
class FpirModel:
    """Measured thresholds of FPIR levels at gallery sizes, and a line in log10 N per level.

    Attributes:
        levels: Measured FPIR levels, ascending; ``levels[0]`` is the floor of what was measured.
        sizes: Gallery sizes measured, ascending.
        measured: Threshold per level and size, [len(levels)][len(sizes)].
        intercept: Per level, the line's threshold at N = 1.
        slope: Per level, the line's threshold increase per factor 10 in N.
        searches: Non-mated searches (distinct probe photos) behind each measured threshold.
        repeats: Galleries drawn per search and size.
        per_identity: At most this many photos of one person in a gallery.
        source: Description of the data measured.
        form: The abscissa of the lines (:data:`FORMS`): chosen by :func:`fit_fpir_model` as the one that,
            fitted on the smaller galleries, best predicted the largest.
    """

    levels: tuple[float, ...]
    sizes: tuple[int, ...]
    measured: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]
    slope: tuple[float, ...]
    searches: int
    repeats: int
    per_identity: int
    source: str
    form: str = "log"

    def __post_init__(self) -> None:
        n_l, n_s = len(self.levels), len(self.sizes)
        if n_l < 2 or n_s < 1:
            raise ValueError(f"FpirModel needs at least 2 levels and 1 size, got {n_l} and {n_s}")
        if list(self.levels) != sorted(set(self.levels)) or list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError("FpirModel.levels and sizes must be strictly increasing")
        if len(self.measured) != n_l or any(len(row) != n_s for row in self.measured):
            raise ValueError("FpirModel.measured must be [levels][sizes]")
        if len(self.intercept) != n_l or len(self.slope) != n_l:
            raise ValueError("FpirModel.intercept and slope need one value per level")

    @property
    def floor(self) -> float:
        """The smallest FPIR measured: rates below it are beyond the measured range."""
        return self.levels[0]

    @property
    def n_max(self) -> int:
        """The largest gallery measured: larger galleries use the lines extrapolated."""
        return self.sizes[-1]

    def thresholds_at(self, gallery_size: int) -> FloatArray:
        """float [L] the model's threshold of each level at ``gallery_size`` (non-increasing in the level)."""
        n = _check_size(gallery_size)
        t = np.asarray(self.intercept) + np.asarray(self.slope) * float(size_axis([n], self.form)[0])
        return np.minimum.accumulate(t)

    def score_at_fpir(self, target_fpir: float, gallery_size: int) -> float:
        """The score whose FPIR against ``gallery_size`` faces is ``target_fpir``, by the model.

        Between levels the threshold is interpolated linearly in log10 FPIR. Above the loosest level the
        loosest level's threshold is returned (stricter than asked); below the floor the two smallest
        levels' line is extrapolated, which :meth:`describe` reports as beyond the measured range.
        """
        p = float(target_fpir)
        if not 0.0 < p <= 1.0:
            raise ValueError(f"target_fpir must be in (0, 1], got {target_fpir}")
        t = self.thresholds_at(gallery_size)
        lp = np.log10(self.levels)
        x = math.log10(p)
        if x >= lp[-1]:
            return float(t[-1])
        if x < lp[0]:
            gradient = (t[1] - t[0]) / (lp[1] - lp[0])
            return float(t[0] + min(gradient, 0.0) * (x - lp[0]))
        return float(np.interp(x, lp, t))

    def fpir(self, scores: ArrayLike, gallery_size: int) -> FloatArray:
        """Estimated FPIR of each score against ``gallery_size`` faces, clamped to the measured levels.

        A score above the floor's threshold gets the floor (the rate is at most that, beyond the measured
        range); a score below the loosest level's threshold gets the loosest level (at least that).
        """
        t = self.thresholds_at(gallery_size)[::-1]
        lp = np.log10(self.levels)[::-1]
        # np.interp needs increasing abscissae: separate equal thresholds by a hair.
        t = t + np.arange(t.size) * 1e-12
        return np.power(10.0, np.interp(np.asarray(scores, dtype=np.float64), t, lp))

    def describe(self, gallery_size: int, targets: Mapping[str, float] | None = None) -> dict[str, Any]:
        """What was measured and what is extrapolated for ``gallery_size`` (for audit details and logs)."""
        out: dict[str, Any] = {
            "fpir_measured": [self.floor, self.levels[-1]],
            "gallery_sizes_measured": [self.sizes[0], self.n_max],
            "score_range_measured": [float(np.min(self.measured)), float(np.max(self.measured))],
            "searches": self.searches,
            "gallery_size": int(gallery_size),
            "extrapolated_in_gallery_size": int(gallery_size) > self.n_max,
        }
        if targets:
            out["levels_below_measured"] = sorted(k for k, v in targets.items() if v < self.floor)
            top = out["score_range_measured"][1]
            out["thresholds_above_measured_scores"] = sorted(
                k for k, v in targets.items() if self.score_at_fpir(v, gallery_size) > top)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels), "sizes": list(self.sizes), "measured": [list(r) for r in self.measured],
            "intercept": list(self.intercept), "slope": list(self.slope), "searches": self.searches,
            "repeats": self.repeats, "per_identity": self.per_identity, "source": self.source,
            # Written only when not the original "log", so artefacts fitted before forms existed keep their hash.
            **({"form": self.form} if self.form != "log" else {}),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> FpirModel:
        return cls(
            levels=tuple(float(v) for v in doc["levels"]), sizes=tuple(int(v) for v in doc["sizes"]),
            measured=tuple(tuple(float(v) for v in row) for row in doc["measured"]),
            intercept=tuple(float(v) for v in doc["intercept"]), slope=tuple(float(v) for v in doc["slope"]),
            searches=int(doc["searches"]), repeats=int(doc["repeats"]), per_identity=int(doc["per_identity"]),
            source=str(doc["source"]), form=str(doc.get("form", "log")),
        )


def fit_fpir_model(
    tops: np.ndarray, sizes: Sequence[int], searches: int, source: str, repeats: int, per_identity: int,
    levels: Sequence[float] = FPIR_LEVELS, min_events: int = MIN_EVENTS, fit_min_size: int = FIT_MIN_SIZE,
) -> FpirModel:
    """Fit the per-level lines to measured top non-mate scores.

    Args:
        tops: float [M, S] top scores from :func:`top_nonmate_scores` (NaN: size not reached).
        sizes: The S gallery sizes.
        searches: Distinct probes behind the rows (the unit of independence for ``min_events``).
        source: Description of the data.
        repeats: Galleries drawn per probe (recorded).
        per_identity: Cap of photos per person in a gallery (recorded).
        levels: Candidate FPIR levels; those with ``level * searches >= min_events`` are kept.
        min_events: Expected exceedances a level needs to count as measured.
        fit_min_size: Sizes below this are recorded but not fitted (unless fewer than 2 sizes remain).

    Raises:
        ValueError: Fewer than 2 levels can be measured with this many searches, or no size was reached.
    """
    kept = sorted(p for p in levels if p * searches >= min_events)
    if len(kept) < 2:
        raise ValueError(
            f"{searches} non-mated searches measure fewer than 2 of the FPIR levels {list(levels)} "
            f"(a level needs {min_events} expected events): label more photos"
        )
    size_arr = np.asarray(sizes, dtype=np.int64)
    valid = [j for j in range(size_arr.size) if np.isfinite(tops[:, j]).mean() > 0.99]
    if not valid:
        raise ValueError("no gallery size was reached by the searches")
    size_arr = size_arr[valid]
    measured = np.array([[threshold_at_fmr(tops[np.isfinite(tops[:, j]), j], p) for j in valid] for p in kept])
    fit_cols = np.flatnonzero(size_arr >= fit_min_size)
    if fit_cols.size < 2:
        fit_cols = np.arange(size_arr.size)
    form = _choose_form(size_arr, measured, fit_cols)
    intercept, slope = _fit_lines(size_arr[fit_cols], measured[:, fit_cols], form)
    model = FpirModel(tuple(kept), tuple(int(n) for n in size_arr), tuple(tuple(float(v) for v in r) for r in measured),
                      tuple(intercept), tuple(slope), int(searches), int(repeats), int(per_identity), source, form)
    log.info("FPIR model from %d searches: levels %s, sizes %s, lines in %s with slopes %s", searches, kept,
             model.sizes, form, [round(b, 4) for b in slope])
    return model


def _fit_lines(sizes: np.ndarray, measured: np.ndarray, form: str) -> tuple[list[float], list[float]]:
    """Per level (row of ``measured``), intercept and non-negative slope of the threshold against the size axis."""
    x = size_axis(sizes, form)
    intercept, slope = [], []
    for row in measured:
        if x.size >= 2:
            b, a = np.polyfit(x, row, 1)
        else:
            a, b = float(row[0]), 0.0
        intercept.append(float(a))
        slope.append(max(float(b), 0.0))
    return intercept, slope


def _choose_form(sizes: np.ndarray, measured: np.ndarray, fit_cols: np.ndarray) -> str:
    """The form whose lines, fitted on galleries up to an eighth of the largest, best predict the largest.

    The calibration data itself decides how the thresholds bend with N (exponential-like tails keep rising
    along log N, Gaussian-like ones slow down); with fewer than 2 small sizes to fit, ``log`` (the conservative
    one for tails that slow down).
    """
    small = fit_cols[sizes[fit_cols] <= sizes[-1] / 8]
    if small.size < 2:
        return "log"
    errors = {}
    for form in FORMS:
        a, b = _fit_lines(sizes[small], measured[:, small], form)
        predicted = np.asarray(a) + np.asarray(b) * float(size_axis([sizes[-1]], form)[0])
        errors[form] = float(np.mean(np.abs(predicted - measured[:, -1])))
    log.info("FPIR model form: error predicting the largest gallery from those up to 1/8 of it: %s",
             {k: round(v, 4) for k, v in errors.items()})
    return min(FORMS, key=lambda f: errors[f])


def measure_fpir_model(
    x: np.ndarray, identity: ArrayLike, source: str, seed: int = 0, repeats: int = DEFAULT_REPEATS,
    per_identity: int = DEFAULT_PER_IDENTITY, min_events: int = MIN_EVENTS, max_probes: int | None = None,
) -> FpirModel:
    """Measure top non-mate scores of leave-one-identity-out searches among ``x`` and fit the model.

    Every photo (or ``max_probes`` of them, drawn at random) searches galleries drawn from the capped pool of
    the other people's photos, at doubling sizes up to the largest the pool allows.
    """
    ident = np.asarray(identity)
    has_face = ~np.isnan(x[:, 0])
    x, ident = x[has_face], ident[has_face]
    rng = np.random.default_rng(seed)
    pool = capped_pool(ident, per_identity, rng)
    sizes = gallery_sizes(pool.size - per_identity)
    probes = np.arange(x.shape[0])
    if max_probes is not None and max_probes < probes.size:
        probes = np.sort(rng.choice(probes, max_probes, replace=False))
    tops = top_nonmate_scores(x[probes], ident[probes], x[pool], ident[pool], sizes, rng, repeats)
    return fit_fpir_model(tops, sizes, int(probes.size), source, repeats, per_identity, min_events=min_events)


def wilson_interval(events: float, trials: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a rate (95% by default); ``events`` may be fractional (averaged repeats)."""
    if trials <= 0:
        return (float("nan"), float("nan"))
    p = events / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _check_size(gallery_size: int) -> int:
    if isinstance(gallery_size, bool) or not isinstance(gallery_size, int | np.integer) or gallery_size < 1:
        raise ValueError(f"gallery_size must be a positive integer, got {gallery_size!r}")
    return int(gallery_size)


def identity_folds(identity: ArrayLike, folds: int) -> NDArray[np.int64]:
    """Fold of each photo: a stable hash of its identity modulo ``folds`` (identity-disjoint folds)."""
    import hashlib

    ident = np.asarray(identity).astype(str)
    names, inverse = np.unique(ident, return_inverse=True)
    codes = np.array([int(hashlib.sha256(n.encode()).hexdigest(), 16) % folds for n in names], dtype=np.int64)
    return codes[inverse]


def heldout_fpir_check(
    x: np.ndarray, identity: ArrayLike, targets: Mapping[str, float], folds: int = 5, seed: int = 0,
    repeats: int = DEFAULT_REPEATS, per_identity: int = DEFAULT_PER_IDENTITY, min_size: int = 1000,
    min_events: int = MIN_EVENTS,
) -> dict[str, Any]:
    """Observed against predicted FPIR at each target on identity-disjoint held-back folds.

    For each fold h, the model is measured and fitted on the other folds' people alone (probes and galleries);
    then fold h's photos search galleries drawn from the capped pool of every other person's photos, at sizes
    from ``min_size`` to the largest the pool allows, and each target's threshold from that model is applied.
    Every comparison counted involves a held-back person, so none was seen by the fit. Counts are pooled over
    folds; intervals are Wilson 95% intervals with the held-back photos as the trials (repeats averaged).

    Args:
        x: float [n, d] unit embeddings (NaN rows: no face, skipped).
        identity: [n] identity of each photo (label fixes applied).
        targets: Band name -> FPIR level.
        folds: Identity folds.
        seed: Seed of pools, shuffles and galleries.
        repeats: Galleries drawn per search and size.
        per_identity: Cap of photos per person in a gallery.
        min_size: Smallest gallery checked.
        min_events: Passed to the per-fold fits.

    Returns:
        ``rows`` (one per band and size: target, observed, interval, ratio, per-fold ratios, whether the size
        or the target lay outside the fold model's measured range), ``sizes``, ``searches`` and ``within_2x``.
    """
    ident = np.asarray(identity)
    has_face = ~np.isnan(x[:, 0])
    x, ident = x[has_face], ident[has_face]
    fold = identity_folds(ident, folds)
    rng = np.random.default_rng(seed)
    pool = capped_pool(ident, per_identity, rng)
    sizes = gallery_sizes(pool.size - per_identity, n_min=min(min_size, pool.size - per_identity))
    events = {(b, n): 0.0 for b in targets for n in sizes}
    per_fold: dict[tuple[str, int], list[float]] = {(b, n): [] for b in targets for n in sizes}
    flags: dict[tuple[str, int], set[str]] = {(b, n): set() for b in targets for n in sizes}
    trials = 0
    for h in range(folds):
        train, test = fold != h, fold == h
        if not test.any() or not train.any():
            continue
        model = measure_fpir_model(x[train], ident[train], f"folds != {h}", seed + h + 1, repeats, per_identity,
                                   min_events)
        tops = top_nonmate_scores(x[test], ident[test], x[pool], ident[pool], sizes, rng, repeats)
        q = int(test.sum())
        trials += q
        for band, p in targets.items():
            for j, n in enumerate(sizes):
                hit = tops[:, j] >= model.score_at_fpir(p, n)
                got = float(hit.reshape(repeats, q).mean(axis=0).sum())
                events[(band, n)] += got
                per_fold[(band, n)].append(round(got / q / p, 3))
                if n > model.n_max:
                    flags[(band, n)].add("gallery size extrapolated")
                if p < model.floor:
                    flags[(band, n)].add("target below the measured FPIR")
    rows: list[dict[str, Any]] = []
    ratios: list[float] = []
    for band, p in targets.items():
        for n in sizes:
            observed = events[(band, n)] / trials
            lo, hi = wilson_interval(events[(band, n)], trials)
            rows.append({"band": band, "target_fpir": p, "gallery_size": int(n), "observed_fpir": observed,
                         "ci": [lo, hi], "ratio": observed / p, "ratio_ci": [lo / p, hi / p],
                         "events": round(events[(band, n)], 2), "searches": trials,
                         "per_fold_ratio": per_fold[(band, n)], "notes": sorted(flags[(band, n)])})
            ratios.append(observed / p)
    within = bool(ratios) and all(0.5 <= r <= 2.0 for r in ratios)
    return {"folds": folds, "sizes": list(sizes), "searches": trials, "repeats": repeats,
            "per_identity": per_identity, "rows": rows, "within_2x": within}


def format_check_rows(check: Mapping[str, Any]) -> list[str]:
    """Printable lines of :func:`heldout_fpir_check` (or a benchmark's) rows."""
    lines = []
    for r in check["rows"]:
        lo, hi = r["ratio_ci"]
        note = f" ({'; '.join(r['notes'])})" if r.get("notes") else ""
        lines.append(f"  {r['band']:>9s} FPIR {r['target_fpir']:g} at N={r['gallery_size']:>9,}: observed "
                     f"{r['observed_fpir']:.4f} = {r['ratio']:.2f}x target [95% CI {lo:.2f}x, {hi:.2f}x] "
                     f"over {r['searches']:,} searches{note}")
    return lines
