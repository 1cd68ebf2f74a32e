"""Measure every configuration on every protocol the inputs allow, in one process, from cached embeddings.

:func:`evaluate` is the NumPy half of ``jobs.evaluate``: given the labelled set, its embeddings and the
protocols, it returns the report (a JSON-ready dict), the ``evaluations`` rows and the curves to plot.
Nothing here reads Spark or the lake, so the same numbers come from the same inputs every time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelink.evaluation import report as rep
from facelink.evaluation.dataset import LabelledSet
from facelink.evaluation.embeddings import EmbeddingStore
from facelink.evaluation.protocols import (
    BootstrapSpec,
    SearchOutcome,
    dedup_metrics,
    false_candidates,
    fill_failures,
    gallery_nonmate_tops,
    group_rates,
    identification_metrics,
    nonmate_threshold,
    paired_deltas,
    search_outcomes,
    verification_metrics,
)
from facelink.evaluation.settings import EvaluationSettings
from facelink.evaluation.suite import (
    PairScorer,
    PairsProtocol,
    SearchProtocol,
    normalised,
    search_calibrations,
    search_matrices,
)
from facelink.evaluation.techniques import GALLERY_RULES, EvalConfig, as_dict
from facelink.metrics import threshold_at_fmr
from facelink.registry import extraction_suffix
from facelink.search.fpir import format_check_rows, heldout_fpir_check
from udfs.embed import fuse_embeddings

log = logging.getLogger(__name__)
REFERENCE_NAME = "reference"
#: Second baseline of the paired differences: the default before SFace (MobileFaceNet, flip TTA, production
#: scoring), measured when the run includes ``sface_mix``.
PREVIOUS_DEFAULT_NAME = "mfn_flip"
#: Third baseline: the previous default under the gallery rule production does not use, the like of
#: ``default_all_faces`` / ``default_quality_only`` (measured when the run includes ``sface_mix``).
PREVIOUS_OTHER_GALLERY_NAMES = ("mfn_flip_all_faces", "mfn_flip_quality_only")


@dataclass(frozen=True)
class Inputs:
    """Everything :func:`evaluate` measures on.

    Attributes:
        labelled: The labelled set.
        store: Its embeddings per variant.
        pairs: The 1:1 protocol (always present: LFW pairs or generated folds).
        search: The 1:N protocol, or None.
        settings: Evaluation settings.
        k: Candidate list length of a 1:N search (``match.k``).
        model_ids: Recogniser name -> model id.
        align_method: The alignment every variant used (``extract.align_method``), for the rows' model ids.
        default_model_id: The production ``model_id`` of the configured pipeline (the ``default`` rows' id).
        bands: Band name -> FPIR level of match and dedup; observed against predicted FPIR on held-back folds
            is measured for the ``default`` configuration at each (none when empty).
    """

    labelled: LabelledSet
    store: EmbeddingStore
    pairs: PairsProtocol
    search: SearchProtocol | None
    settings: EvaluationSettings
    k: int
    model_ids: Mapping[str, str]
    align_method: str = "lstsq"
    default_model_id: str = ""
    bands: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Outputs:
    report: dict[str, Any]
    rows: list[dict[str, Any]]
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    false_pairs: dict[str, list[tuple[str, str, str, str, float]]]
    outcomes: dict[str, tuple[SearchOutcome, np.ndarray]] = field(default_factory=dict)


def config_model_id(config: EvalConfig, model_ids: Mapping[str, str], align_method: str = "lstsq") -> str:
    """The configuration's recogniser id(s) plus its extraction settings, as production writes ``model_id``."""
    ids = [model_ids[r] for r in config.recognisers]
    if config.member_flips:  # each member's own flip TTA is part of its id
        ids = [i + ("+flip" if f else "") for i, f in zip(ids, config.member_flips, strict=True)]
    base = ids[0] if len(ids) == 1 else "fuse:" + "+".join(ids)
    flip = config.flip_tta and not config.member_flips
    return base + extraction_suffix(config.detect_size, flip, align_method)


def evaluate(inputs: Inputs, configs: Sequence[EvalConfig]) -> Outputs:
    """Run every protocol for every configuration; see the module docstring."""
    s = inputs.settings
    boot = BootstrapSpec(s.n_boot, 0.05, s.seed)
    out = Outputs({"verification": {}, "identification": {}, "dedup": {}, "renewal": {}, "gallery_size": {},
                   "groups": {}, "calibration": {}, "false_candidates": {}, "timing_s": {}}, [],
                  {"verification_det": {}, "verification_roc": {}, "identification_det": {}}, {})
    ident = inputs.labelled.identity_codes()
    for config in configs:
        started = time.perf_counter()
        log.info("evaluating %s: %s", config.name, config.describe())
        _verification(inputs, config, ident, boot, out)
        if inputs.search is not None:
            _search(inputs, inputs.search, config, boot, out)
        out.report["timing_s"][config.name] = round(time.perf_counter() - started, 1)
    _deltas(inputs, configs, boot, out)
    _fpir_check(inputs, configs, out)
    out.report["configs"] = {c.name: as_dict(c) for c in configs}
    out.report["model_ids"] = {c.name: config_model_id(c, inputs.model_ids, inputs.align_method) for c in configs}
    if inputs.default_model_id:  # the default under either gallery rule embeds with the production pipeline
        for name in ("default", *(f"default{suffix}" for suffix in GALLERY_RULES.values())):
            if name in out.report["model_ids"]:
                out.report["model_ids"][name] = inputs.default_model_id
    return out


def _verification(inputs: Inputs, config: EvalConfig, ident: np.ndarray, boot: BootstrapSpec, out: Outputs) -> None:
    s, proto = inputs.settings, inputs.pairs
    scorer = PairScorer(config, inputs.store, proto.photo_fold, ident, s.calibration_nonmates, s.seed,
                        inputs.model_ids)
    scores = scorer.pair_scores(proto)
    m = verification_metrics(scores, proto.same, proto.fold, s.far_targets, boot)
    out.curves["verification_det"][config.name] = m["curves"]["det"]
    out.curves["verification_roc"][config.name] = m["curves"]["roc"]
    out.report["verification"][config.name] = {k: v for k, v in m.items() if k != "curves"}
    out.rows += rep.verification_rows(config.name, m)
    groups = inputs.labelled.groups
    if groups is not None:
        filled, _ = fill_failures(scores)
        threshold = threshold_at_fmr(filled[~proto.same], s.group_fmr)
        g = np.asarray(groups)
        rates = group_rates(scores, proto.same, g[proto.left], g[proto.right], threshold)
        out.report["groups"][config.name] = rates
        out.rows += rep.group_rows(config.name, rates)
    if s.calibration_fmr_targets:
        check = scorer.calibration_check(proto, s.calibration_fmr_targets)
        out.report["calibration"][config.name] = check
        out.rows += rep.calibration_rows(config.name, check)


def _search(inputs: Inputs, proto: SearchProtocol, config: EvalConfig, boot: BootstrapSpec, out: Outputs) -> None:
    s = inputs.settings
    cals = search_calibrations(config, inputs.store, inputs.labelled, proto, s.calibration_nonmates, s.seed,
                               inputs.model_ids)
    raw = search_matrices(config, inputs.store, proto, cals)
    mats = normalised(config, raw)
    outcome = search_outcomes(mats.probe_gallery, proto.mates)
    if s.gallery_nonmated:
        loo = gallery_nonmate_tops(mats.gallery_gallery, proto.gallery_identity)
        outcome = SearchOutcome(outcome.mate_scores, outcome.mate_ranks, np.concatenate([outcome.nonmate_top, loo]))
    ident = identification_metrics(outcome, s.fpir_targets, s.ranks, inputs.k, boot)
    out.curves["identification_det"][config.name] = ident.pop("curves")["det"]
    out.report["identification"][config.name] = ident
    out.rows += rep.identification_rows(config.name, ident)

    dedup = dedup_metrics(mats.gallery_gallery, proto.dup_pairs, outcome.nonmate_top, s.fpir_targets, inputs.k, boot)
    out.outcomes[config.name] = (outcome, dedup.pop("best_scores"))
    for target, got in dedup["recall_at_fpir"].items():
        count, top = false_candidates(mats.gallery_gallery, proto.gallery_identity, got["threshold"],
                                      s.false_candidates if target == s.fpir_targets[0] else 0)
        got["false_pairs"] = count
        if top:
            out.false_pairs[config.name] = _describe_pairs(inputs, proto, top)
    out.report["dedup"][config.name] = dedup
    out.rows += rep.dedup_rows(config.name, dedup)
    if out.false_pairs.get(config.name):
        out.report["false_candidates"][config.name] = out.false_pairs[config.name]

    if len(proto.renewal_probes):
        renew = _renewal(mats, proto, outcome.nonmate_top, s, inputs.k, boot)
        out.report["renewal"][config.name] = renew
        out.rows += rep.identification_rows(config.name, renew, protocol="identification", prefix="renewal_")
    if config.name in s.size_curve_configs:
        curve = _gallery_size_curve(inputs, proto, config, raw)
        out.report["gallery_size"][config.name] = curve
        for size, fnirs in curve.items():
            for target, fnir in fnirs.items():
                out.rows.append(rep.row("identification", config.name,
                                        f"fnir_at_fpir_{rep.fpir_label(target)}@gallery_{size}", fnir,
                                        n=int(proto.mated.sum())))


def _fpir_check(inputs: Inputs, configs: Sequence[EvalConfig], out: Outputs) -> None:
    """Observed FPIR at each band on identity-disjoint held-back folds, for the production (``default``) scoring.

    Photo-level searches, as match and dedup search faces; the model of each fold is fitted on the other folds'
    people (:func:`facelink.search.fpir.heldout_fpir_check`). Identities carry the label fixes of the labelled set.
    """
    default = next((c for c in configs if c.name == "default"), None)
    if not inputs.bands or default is None:
        return
    members = [inputs.store.get(v) for v in default.variants]
    x = fuse_embeddings(members, default.scoring.fusion_weights) if len(members) > 1 else members[0]
    try:
        check = heldout_fpir_check(x, np.asarray(inputs.labelled.identities), inputs.bands,
                                   folds=inputs.settings.folds, seed=inputs.settings.seed)
    except ValueError as exc:
        log.warning("held-back FPIR check of %s skipped: %s", default.name, exc)
        out.report["fpir_check"] = {default.name: {"skipped": str(exc)}}
        return
    log.info("held-back FPIR of %s:\n%s", default.name, "\n".join(format_check_rows(check)))
    out.report["fpir_check"] = {default.name: check}
    out.rows += rep.fpir_check_rows(default.name, check)


def _deltas(inputs: Inputs, configs: Sequence[EvalConfig], boot: BootstrapSpec, out: Outputs) -> None:
    """Paired differences of every configuration against the reference and against the previous default
    (each when both were measured): ``vs_reference``, ``vs_mfn_flip`` and ``vs_mfn_flip_all_faces`` or
    ``vs_mfn_flip_quality_only`` in the report."""
    for base_name in (REFERENCE_NAME, PREVIOUS_DEFAULT_NAME, *PREVIOUS_OTHER_GALLERY_NAMES):
        base = out.outcomes.get(base_name)
        if base is None:
            continue
        key = f"vs_{base_name}"
        out.report[key] = {}
        for config in configs:
            if config.name == base_name or config.name not in out.outcomes:
                continue
            other = out.outcomes[config.name]
            d = paired_deltas(base[0], other[0], base[1], other[1], inputs.settings.fpir_targets, inputs.k, boot)
            out.report[key][config.name] = d
            for kind, per_target in d.items():
                protocol = "identification" if kind == "fnir" else "dedup"
                metric = "fnir" if kind == "fnir" else "dup_recall"
                for t, got in per_target.items():
                    name = f"{metric}_at_fpir_{rep.fpir_label(t)}_delta_{key}"
                    out.rows.append(rep.row(protocol, config.name, name, got["delta"], ci=got["ci"]))


def _renewal(mats: Any, proto: SearchProtocol, nonmate_top: np.ndarray, s: EvaluationSettings, k: int,
             boot: BootstrapSpec) -> dict[str, Any]:
    """Renewal records (two photos) searched by a third photo of the same person; FPIR from the usual
    non-mated probes. This is where record templates can act: no mated probe of the main protocol
    searches a record with more than one photo."""
    renewal = search_outcomes(mats.renewal_gallery, proto.renewal_mates)
    outcome = SearchOutcome(renewal.mate_scores, renewal.mate_ranks, nonmate_top)
    return identification_metrics(outcome, s.fpir_targets[:1], s.ranks[:1], k, boot)


def _gallery_size_curve(inputs: Inputs, proto: SearchProtocol, config: EvalConfig, raw: Any) -> dict[int, Any]:
    """FNIR at each FPIR target on galleries shrunk to each size (mates kept, other records sampled)."""
    s = inputs.settings
    n = len(proto.gallery)
    mates = np.unique(np.concatenate([m for m in proto.mates if len(m)]))
    others = np.setdiff1d(np.arange(n), mates)
    rng = np.random.default_rng(s.seed)
    order = rng.permutation(others)
    curve: dict[int, Any] = {}
    for size in sorted(set(s.gallery_sizes)):
        if size >= n or size <= len(mates):
            continue
        cols = np.sort(np.concatenate([mates, order[: size - len(mates)]]))
        remap = -np.ones(n, dtype=np.int64)
        remap[cols] = np.arange(len(cols))
        mats = normalised(config, raw, cols)
        o = search_outcomes(mats.probe_gallery, [remap[m] for m in proto.mates])
        curve[size] = {t: _fnir(o, t, inputs.k) for t in s.fpir_targets}
    full = search_outcomes(normalised(config, raw).probe_gallery, proto.mates)
    curve[n] = {t: _fnir(full, t, inputs.k) for t in s.fpir_targets}
    return curve


def _fnir(o: Any, target: float, k: int) -> float:
    t = nonmate_threshold(o.nonmate_top, target)
    found = (o.mate_ranks <= k) & (np.nan_to_num(o.mate_scores, nan=-np.inf) >= t)
    return float(1.0 - found.mean())


def _describe_pairs(inputs: Inputs, proto: SearchProtocol, top: list[tuple[int, int, float]],
                    ) -> list[tuple[str, str, str, str, float]]:
    """(record a, its first photo, record b, its first photo, score) of each false candidate pair."""
    paths = inputs.labelled.paths
    return [(proto.gallery.ids[a], paths[proto.gallery.photos[a][0]], proto.gallery.ids[b],
             paths[proto.gallery.photos[b][0]], score) for a, b, score in top]


def draw_false_candidates(labelled: LabelledSet, pairs: Mapping[str, list[tuple[str, str, str, str, float]]],
                          configs: Sequence[str], out_dir: Path) -> list[str]:
    """Side-by-side thumbnails of the top false dedup candidates of ``configs``; returns the files."""
    written = []
    for name in configs:
        for i, (_ra, pa, _rb, pb, score) in enumerate(pairs.get(name, [])):
            caption = f"{name} #{i + 1} score {score:.3f}\n{pa.split('/')[-1]} | {pb.split('/')[-1]}"
            path = out_dir / "false_candidates" / name / f"{i + 1:02d}.png"
            written.append(str(rep.side_by_side(labelled.root / pa, labelled.root / pb, caption, path)))
    return written
