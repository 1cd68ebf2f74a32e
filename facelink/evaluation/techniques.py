"""Scoring configurations and the score matrices they give (issue 9's techniques).

A configuration names how photos become embeddings (recognisers, flip TTA, detector size) and how a
probe is scored against a record (:class:`ScoringConf`): record templates over several photos, score
fusion of several recognisers through their calibrated FMR maps, and cohort normalisation against the
gallery. Each technique is a switch; :func:`evaluation_configs` builds the bare reference, each technique
alone on top of it, the configured default and everything combined, so one run measures them side by side.

Order of operations for one pair of records: per recogniser, photo scores (cosine) reduced over the
records' photos by the template rule; then the recognisers' scores fused as the sum of ``-log10 FMR``
(:func:`facelink.search.calibration.fuse_scores_fmr`), or their weighted mean (``linear``: what production's fused
recogniser computes, :func:`udfs.embed.fuse_embeddings`); then cohort normalisation of the fused score.

The ``default`` configuration is what the production jobs do with the configuration given: the configured
recogniser (one model or a ``models.fusions`` entry, linear fusion with its weights), ``extract.flip_tta`` and
``extract.detect_size``, and a record scored by its best photo (match and dedup search every photo's face and
list a record by its best-scoring one), without cohort normalisation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from facelink.config import Config
from facelink.evaluation.embeddings import EmbeddingStore, Variant, l2_rows
from facelink.registry import recogniser
from facelink.search.calibration import Calibration, cohort_normalise, fuse_scores_fmr
from udfs.embed import fuse_embeddings

log = logging.getLogger(__name__)

TemplateRule = Literal["single", "embedding_mean", "score_mean", "score_max"]
CohortMode = Literal["none", "probe", "symmetric"]
REFERENCE_RECOGNISER = "mobilefacenet_128d"
REFERENCE_DETECT_SIZE = 320
FUSION_RECOGNISERS = ("mobilefacenet_128d", "dlib_resnet34_128d")
#: The members of the SFace study (issue 16): MobileFaceNet and SFace, alone and fused, flip TTA per member.
SFACE_MEMBERS = ("mobilefacenet_128d", "sface_128d")


@dataclass(frozen=True)
class ScoringConf:
    """How a probe is scored against a record; proposed as the ``scoring`` configuration section.

    Attributes:
        recognisers: Recognisers whose scores are fused; empty = ``models.recogniser`` alone.
        fusion_method: ``sum`` or ``mean`` of the per-recogniser ``-log10 FMR`` evidence, or ``linear``: the
            weighted mean of the cosines (``fusion_weights``), computed on the fused embedding as production does.
        fusion_weights: Per recogniser, its weight in ``linear`` fusion (summing to 1).
        template: How a record with several photos is scored: ``single`` (its most recent photo with a
            face), ``embedding_mean`` (quality-weighted mean of its photos' embeddings, re-normalised),
            ``score_mean`` (quality-weighted mean of the photo scores) or ``score_max``.
        quality_weighting: Weight photos by face quality in the template (1 if the face passes the
            quality rule, else ``low_quality_weight``).
        low_quality_weight: Weight of a photo whose face fails the quality rule.
        cohort_norm: ``none``; ``probe`` (z-normalise each score by the searching side's cohort); or
            ``symmetric`` (mean of the searching and the found side's z-scores, "S-norm").
        cohort_exclude_top: A side's best-scoring gallery records left out of its cohort (they may be
            its mates or duplicates).
        cohort_size: Gallery records after those forming the cohort (the next best: an adaptive cohort).
        gallery_quality_filter: Search only the searched records' photos whose face passes the quality rule,
            as production's gallery does with ``index.gallery_quality: exclude``
            (:func:`facelink.index.gallery.searchable_faces`): a record left with none cannot be found.
    """

    recognisers: tuple[str, ...] = ()
    fusion_method: Literal["sum", "mean", "linear"] = "sum"
    fusion_weights: tuple[float, ...] = ()
    template: TemplateRule = "embedding_mean"
    quality_weighting: bool = True
    low_quality_weight: float = 0.25
    cohort_norm: CohortMode = "symmetric"
    cohort_exclude_top: int = 10
    cohort_size: int = 50
    gallery_quality_filter: bool = False

    def __post_init__(self) -> None:
        if self.template not in ("single", "embedding_mean", "score_mean", "score_max"):
            raise ValueError(f"scoring.template: unknown rule {self.template!r}")
        if self.cohort_norm not in ("none", "probe", "symmetric"):
            raise ValueError(f"scoring.cohort_norm: unknown mode {self.cohort_norm!r}")
        if self.cohort_exclude_top < 0 or self.cohort_size < 2:
            raise ValueError("scoring.cohort_exclude_top must be >= 0 and scoring.cohort_size >= 2")
        if not 0.0 <= self.low_quality_weight <= 1.0:
            raise ValueError("scoring.low_quality_weight must be in [0, 1]")
        if self.fusion_method not in ("sum", "mean", "linear"):
            raise ValueError(f"scoring.fusion_method: unknown method {self.fusion_method!r}")
        if self.fusion_method == "linear" and self.recognisers and len(self.fusion_weights) != len(self.recognisers):
            raise ValueError("scoring.fusion_weights: linear fusion needs one weight per recogniser")


@dataclass(frozen=True)
class EvalConfig:
    """One configuration an evaluation measures: extraction settings plus scoring."""

    name: str
    recognisers: tuple[str, ...]
    flip_tta: bool
    detect_size: int
    scoring: ScoringConf
    member_flips: tuple[bool, ...] = ()  # per recogniser, its own flip TTA (``()``: ``flip_tta`` for all)

    def __post_init__(self) -> None:
        if self.member_flips and len(self.member_flips) != len(self.recognisers):
            raise ValueError(f"configuration {self.name!r}: one member flip setting per recogniser, or none")

    @property
    def flips(self) -> tuple[bool, ...]:
        """Each recogniser's flip TTA."""
        return self.member_flips or (self.flip_tta,) * len(self.recognisers)

    @property
    def fused(self) -> bool:
        return len(self.recognisers) > 1

    @property
    def calibrated_fusion(self) -> bool:
        """Fusion through per-recogniser calibrated FMR maps (linear fusion needs none)."""
        return self.fused and self.scoring.fusion_method != "linear"

    @property
    def variants(self) -> list[Variant]:
        return [Variant(r, f, self.detect_size) for r, f in zip(self.recognisers, self.flips, strict=True)]

    def describe(self) -> dict[str, Any]:
        s = self.scoring
        return {
            "recognisers": list(self.recognisers), "flip_tta": self.flip_tta, "member_flips": list(self.flips),
            "detect_size": self.detect_size,
            "template": s.template, "quality_weighting": s.quality_weighting, "fusion_method": s.fusion_method,
            "cohort_norm": s.cohort_norm, "cohort_exclude_top": s.cohort_exclude_top,
            "cohort_size": s.cohort_size, "gallery_quality_filter": s.gallery_quality_filter,
        }


def default_config(cfg: Config) -> EvalConfig:
    """What the production jobs do with ``cfg`` (see the module docstring): the configured extraction, a record
    scored by its best photo, and the gallery's faces searched as ``index.gallery_quality`` says (all of them,
    or only those passing the quality rule). The gallery's index is not simulated: below ``index.flat_max``
    vectors per partition production searches exactly, as here."""
    rec = recogniser(cfg)
    names = tuple(m.name for m in rec.members)
    scoring = ScoringConf(
        recognisers=names if rec.fused else (), fusion_method="linear" if rec.fused else "sum",
        fusion_weights=rec.weights if rec.fused else (), template="score_max", quality_weighting=False,
        cohort_norm="none", gallery_quality_filter=cfg.index.gallery_quality == "exclude",
    )
    flips = rec.member_flips(cfg.extract.flip_tta) if rec.flips else ()
    return EvalConfig("default", names, cfg.extract.flip_tta, cfg.extract.detect_size, scoring, flips)


def sface_configs(cfg: Config) -> list[EvalConfig]:
    """Issue 16's member mixes, each extracted and scored as production would run it (the configured detector
    size, a record scored by its best photo): MobileFaceNet with flip TTA (the default before SFace), SFace
    with and without flip TTA, and the two fused with flip TTA on both or on MobileFaceNet only. The previous
    default is also measured with the other gallery rule (:func:`gallery_alternatives`: ``mfn_flip_all_faces``
    or ``mfn_flip_quality_only``), the baseline of ``default_all_faces`` or ``default_quality_only``. The fusions
    use the weights of the configured recogniser when it fuses these two models, else equal weights. A mix
    that is the default itself (same variants and scoring, under either gallery rule) is left out: the
    ``default`` rows measure it."""
    default = default_config(cfg)
    weights = default.scoring.fusion_weights if default.recognisers == SFACE_MEMBERS else (0.5, 0.5)
    size = default.detect_size
    single = replace(default.scoring, recognisers=(), fusion_method="sum", fusion_weights=())
    linear = replace(default.scoring, recognisers=SFACE_MEMBERS, fusion_method="linear", fusion_weights=weights)
    mfn, sface = SFACE_MEMBERS
    previous = EvalConfig("mfn_flip", (mfn,), True, size, single)
    mixes = [
        previous,
        *gallery_alternatives(previous),
        EvalConfig("sface", (sface,), False, size, single),
        EvalConfig("sface_flip", (sface,), True, size, single),
        EvalConfig("mfn_sface_flip", SFACE_MEMBERS, True, size, linear),
        EvalConfig("mfn_flip_sface", SFACE_MEMBERS, True, size, linear, (True, False)),
    ]
    defaults = [(c.variants, c.scoring) for c in (default, *gallery_alternatives(default, every=True))]
    return [c for c in mixes if (c.variants, c.scoring) not in defaults]


#: Name suffix of a configuration measured with the gallery filter off / on.
GALLERY_RULES = {False: "_all_faces", True: "_quality_only"}


def gallery_alternatives(config: EvalConfig, every: bool = False) -> list[EvalConfig]:
    """``config`` under the other gallery rule (``<name>_all_faces`` without the quality filter,
    ``<name>_quality_only`` with it); with ``every``, under both rules, named so, whichever ``config`` has."""
    return [replace(config, name=f"{config.name}{suffix}", scoring=replace(config.scoring, gallery_quality_filter=on))
            for on, suffix in GALLERY_RULES.items() if every or on != config.scoring.gallery_quality_filter]


REFERENCE = EvalConfig(
    "reference", (REFERENCE_RECOGNISER,), False, REFERENCE_DETECT_SIZE,
    ScoringConf(template="single", quality_weighting=False, cohort_norm="none"),
)


#: Each technique's settings when it is measured alone (on top of the reference) and in ``all``.
TEMPLATES = ScoringConf(template="embedding_mean", quality_weighting=True, low_quality_weight=0.25,
                        cohort_norm="none")
COHORT = ScoringConf(template="single", quality_weighting=False, cohort_norm="symmetric", cohort_exclude_top=10,
                     cohort_size=50)


def evaluation_configs(cfg: Config, names: Sequence[str], alt_detect_sizes: Sequence[int]) -> list[EvalConfig]:
    """The configurations to measure, by name.

    Names: ``reference`` (bare single-photo MobileFaceNet at 320); each technique alone on top of it:
    ``flip_tta``, ``templates`` (quality-weighted mean embedding of a record's photos), ``fusion`` (the
    configured fusion, linear with its weights, or MobileFaceNet + dlib linear with equal weights when the
    configured recogniser is one model), ``sface_mix`` (:func:`sface_configs`: MobileFaceNet and SFace alone and
    fused, flip TTA per member; each mix also by its own name), ``fusion_fmr`` (the same recognisers fused as
    the sum of their calibrated ``-log10 FMR``), ``cohort_norm`` (symmetric S-norm), ``detect_size`` (one
    ``detect_<n>`` per alternative size); ``default`` (what production does with ``cfg``),
    ``default_all_faces`` and ``default_quality_only`` (the default without / with the gallery quality filter:
    the one that is production's rule is ``default`` itself and measured once) and ``all`` (every technique on,
    at the configured detector size).

    Raises:
        ValueError: An unknown name.
    """
    default = default_config(cfg)
    ref = REFERENCE
    if default.scoring.fusion_method == "linear":
        fusion, weights = default.recognisers, default.scoring.fusion_weights
    else:
        fusion, weights = FUSION_RECOGNISERS, tuple(1.0 / len(FUSION_RECOGNISERS) for _ in FUSION_RECOGNISERS)
    linear = replace(ref.scoring, recognisers=fusion, fusion_method="linear", fusion_weights=weights)
    alone = {
        "reference": [ref],
        "flip_tta": [replace(ref, name="flip_tta", flip_tta=True)],
        "templates": [replace(ref, name="templates", scoring=TEMPLATES)],
        "fusion": [replace(ref, name="fusion", recognisers=fusion, scoring=linear)],
        "fusion_fmr": [replace(ref, name="fusion_fmr", recognisers=fusion,
                               scoring=replace(ref.scoring, recognisers=fusion, fusion_method="sum"))],
        "cohort_norm": [replace(ref, name="cohort_norm", scoring=COHORT)],
        "detect_size": [replace(ref, name=f"detect_{n}", detect_size=n) for n in alt_detect_sizes
                        if n != ref.detect_size],
        "sface_mix": sface_configs(cfg),
        **{c.name: [c] for c in sface_configs(cfg)},
        "default": [default],
        # the default under the gallery rule production does not use (the one it uses is ``default`` itself)
        **{f"default{suffix}": [c for c in gallery_alternatives(default) if c.name.endswith(suffix)]
           for suffix in GALLERY_RULES.values()},
        "all": [EvalConfig("all", fusion, True, default.detect_size, replace(
            TEMPLATES, recognisers=fusion, fusion_method="linear", fusion_weights=weights, cohort_norm="symmetric",
            cohort_exclude_top=COHORT.cohort_exclude_top, cohort_size=COHORT.cohort_size))],
    }
    out: list[EvalConfig] = []
    for name in names:
        if name not in alone:
            raise ValueError(f"evaluation.configs: unknown configuration {name!r} (known: {sorted(alone)})")
        out.extend(c for c in alone[name] if c.name not in {o.name for o in out})
    return out


@dataclass(frozen=True)
class Records:
    """Records as lists of photo positions (into the labelled set), most recent photo first.

    Attributes:
        ids: Record ids.
        photos: Photo positions of each record, most recent first.
    """

    ids: list[str]
    photos: list[list[int]] = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.photos) or any(not p for p in self.photos):
            raise ValueError("every record needs at least one photo, and one photo list per id")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> Records:
        return Records([self.ids[i] for i in rows], [self.photos[i] for i in rows])


def photo_weights(store: EmbeddingStore, variant: Variant, scoring: ScoringConf) -> np.ndarray:
    """float64 [P] template weight of each photo: 0 without a face, else 1 or the low-quality weight."""
    has = store.has_face(variant)
    if not scoring.quality_weighting:
        return has.astype(np.float64)
    ok = store.quality_ok[variant.detect_size]
    return np.where(has, np.where(ok, 1.0, scoring.low_quality_weight), 0.0)


def _slots(records: Records, x: np.ndarray, w: np.ndarray, rule: TemplateRule) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per record, vectors [R, d] and weights [R] of photo slot j (NaN / 0 where the record has no j-th face).

    ``single`` and ``embedding_mean`` give one slot; the score rules one slot per photo position.
    """
    n, d = len(records), x.shape[1]
    if rule == "single":
        v = np.full((n, d), np.nan, np.float32)
        for i, photos in enumerate(records.photos):
            first = next((p for p in photos if w[p] > 0), None)
            if first is not None:
                v[i] = x[first]
        return [(v, (~np.isnan(v[:, 0])).astype(np.float64))]
    if rule == "embedding_mean":
        v = np.full((n, d), np.nan, np.float32)
        for i, photos in enumerate(records.photos):
            ws = np.array([w[p] for p in photos])
            if ws.sum() > 0:
                v[i] = np.nansum([wi * x[p] for wi, p in zip(ws, photos, strict=True) if wi > 0], axis=0)
        v = l2_rows(v)
        return [(v, (~np.isnan(v[:, 0])).astype(np.float64))]
    depth = max(len(p) for p in records.photos)
    out = []
    for j in range(depth):
        v = np.full((n, d), np.nan, np.float32)
        wj = np.zeros(n)
        for i, photos in enumerate(records.photos):
            if j < len(photos) and w[photos[j]] > 0:
                v[i], wj[i] = x[photos[j]], w[photos[j]]
        out.append((v, wj))
    return out


def record_scores(a: Records, b: Records, x: np.ndarray, w: np.ndarray, rule: TemplateRule) -> np.ndarray:
    """Cosine scores of records ``a`` against records ``b`` under one template rule.

    Args:
        a: Searching records.
        b: Searched records.
        x: float32 [P, d] unit photo embeddings (NaN rows without a face).
        w: float64 [P] photo weights (0 without a face).
        rule: Template rule (see :class:`ScoringConf`).

    Returns:
        float64 [len(a), len(b)]; NaN where either record has no face.
    """
    sa, sb = _slots(a, x, w, rule), _slots(b, x, w, rule)
    if rule in ("single", "embedding_mean"):
        (va, _), (vb, _) = sa[0], sb[0]
        return np.nan_to_num(va).astype(np.float64) @ np.nan_to_num(vb).astype(np.float64).T + _nan_mask(va, vb)
    num = np.zeros((len(a), len(b)))
    den = np.zeros((len(a), len(b)))
    best = np.full((len(a), len(b)), -np.inf)
    for va, wa in sa:
        for vb, wb in sb:
            s = np.nan_to_num(va).astype(np.float64) @ np.nan_to_num(vb).astype(np.float64).T
            ww = np.outer(wa, wb)
            num += ww * s
            den += ww
            best = np.where(ww > 0, np.maximum(best, s), best)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den if rule == "score_mean" else best
    return np.where(den > 0, out, np.nan)


def _nan_mask(va: np.ndarray, vb: np.ndarray) -> np.ndarray:
    """0 where both rows have a face, NaN otherwise, shape [len(va), len(vb)]."""
    ma = np.where(np.isnan(va[:, 0]), np.nan, 0.0)
    mb = np.where(np.isnan(vb[:, 0]), np.nan, 0.0)
    return ma[:, None] + mb[None, :]


def fuse(per_model: Sequence[np.ndarray], calibrations: Sequence[Calibration], scoring: ScoringConf) -> np.ndarray:
    """Fuse per-recogniser cosine matrices (NaN kept): their weighted mean (``linear``) or the ``sum``/``mean``
    of their calibrated ``-log10 FMR``; one model: as is."""
    if len(per_model) == 1:
        return per_model[0]
    if scoring.fusion_method == "linear":
        return np.sum([w * m for w, m in zip(scoring.fusion_weights, per_model, strict=True)], axis=0)
    return fuse_scores_fmr(per_model, calibrations, scoring.fusion_method)


def cohort_stats_input(scores: np.ndarray, exclude_top: int, size: int) -> np.ndarray:
    """Each row's cohort: its scores ranked ``exclude_top + 1 .. exclude_top + size`` (NaN ignored).

    Args:
        scores: float [Q, G] (NaN for absent pairs, including a record against itself).
        exclude_top: Best scores left out (possible mates).
        size: Cohort size C.

    Returns:
        float64 [Q, C]; rows with too few scores are padded with their last value (or 0 if empty).
    """
    s = np.where(np.isnan(scores), -np.inf, scores)
    need = min(exclude_top + size, s.shape[1])
    top = -np.sort(-np.partition(s, s.shape[1] - need, axis=1)[:, s.shape[1] - need :], axis=1)
    cohort = top[:, exclude_top:need]
    if cohort.shape[1] < size:
        cohort = np.concatenate([cohort, np.repeat(cohort[:, -1:], size - cohort.shape[1], axis=1)], axis=1)
    finite = np.isfinite(cohort)
    fill = np.max(np.where(finite, cohort, -np.inf), axis=1) if cohort.size else np.zeros(len(cohort))
    fill = np.where(np.isfinite(fill), fill, 0.0)
    return np.where(finite, cohort, fill[:, None])


def normalise(scores: np.ndarray, query_cohort: np.ndarray | None, target_cohort: np.ndarray | None,
              mode: CohortMode) -> np.ndarray:
    """Cohort-normalise a score matrix (NaN kept).

    Args:
        scores: float [Q, G].
        query_cohort: [Q, C] cohort scores of the searching side (from :func:`cohort_stats_input`).
        target_cohort: [G, C] cohort scores of the searched side (needed for ``symmetric``).
        mode: ``none``, ``probe`` or ``symmetric``.
    """
    if mode == "none":
        return scores
    if query_cohort is None:
        raise ValueError("cohort normalisation needs the searching side's cohort")
    mask = np.isnan(scores)
    filled = np.where(mask, 0.0, scores)
    size = query_cohort.shape[1]
    z = cohort_normalise(filled, query_cohort, top=size)
    if mode == "symmetric":
        if target_cohort is None:
            raise ValueError("symmetric cohort normalisation needs the searched side's cohort")
        z = 0.5 * (z + cohort_normalise(filled.T, target_cohort, top=size).T)
    return np.where(mask, np.nan, z)


def searched_weights(store: EmbeddingStore, variant: Variant, scoring: ScoringConf, searched: Records) -> np.ndarray:
    """:func:`photo_weights`, with the ``searched`` records' photos that fail the quality rule set to 0 when the
    scoring filters the gallery (the searching side's photos are not filtered, unless they are searched too)."""
    w = photo_weights(store, variant, scoring)
    if scoring.gallery_quality_filter:
        rows = np.array(sorted({p for photos in searched.photos for p in photos}), dtype=np.int64)
        w = w.copy()
        w[rows] = np.where(store.quality_ok[variant.detect_size][rows], w[rows], 0.0)
    return w


def config_record_scores(
    config: EvalConfig, store: EmbeddingStore, a: Records, b: Records, calibrations: Mapping[str, Calibration],
) -> np.ndarray:
    """Raw (fused, not normalised) scores of records ``a`` against ``b`` under ``config``."""
    if config.fused and config.scoring.fusion_method == "linear":
        # As production: one fused embedding per photo, then the template rule over it.
        vectors = [store.get(v) for v in config.variants]
        x = fuse_embeddings(vectors, config.scoring.fusion_weights)
        w = searched_weights(store, config.variants[0], config.scoring, b)
        return record_scores(a, b, x, w, config.scoring.template)
    per_model = []
    for v in config.variants:
        per_model.append(record_scores(a, b, store.get(v), searched_weights(store, v, config.scoring, b),
                                       config.scoring.template))
    cals = [calibrations[v.recogniser] for v in config.variants] if config.calibrated_fusion else []
    return fuse(per_model, cals, config.scoring)


def as_dict(config: EvalConfig) -> dict[str, Any]:
    """Plain form for the report."""
    return {"name": config.name, **config.describe(), "scoring": asdict(config.scoring)}
