"""Protocol data (LFW pairs, the 1:N archive) and the scoring of each configuration against them.

:class:`PairsProtocol` holds 1:1 comparisons with identity-disjoint folds (LFW View 2's, or generated
ones); :class:`SearchProtocol` the 1:N archive of :mod:`facelink.sample`. :class:`PairScorer` scores photos
within a fold, calibrating fusion on other folds only; :func:`search_matrices` scores probes and gallery
records for the 1:N, duplicate and renewal searches.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facelink.errors import InputError
from facelink.evaluation.dataset import LabelledSet, data_digest
from facelink.evaluation.embeddings import EmbeddingStore, Variant
from facelink.evaluation.techniques import (
    EvalConfig,
    Records,
    cohort_stats_input,
    config_record_scores,
    fuse,
    normalise,
)
from facelink.lfw import read_pairs
from facelink.sample import SIZES, SampleSizes, build_sample
from facelink.search.calibration import Calibration, fit_calibration

log = logging.getLogger(__name__)

#: ``fitted_at`` of calibrations fitted by an evaluation: fixed, so their versions repeat run to run.
FITTED_AT = "evaluation"
MAX_MATES = 200_000


# --------------------------------------------------------------------------------------------- 1:1 data


@dataclass(frozen=True)
class PairsProtocol:
    """1:1 comparisons between photos of a labelled set.

    Attributes:
        left, right: int [n] photo positions of each comparison.
        same: bool [n] same identity.
        fold: int [n] fold of each comparison.
        photo_fold: int [P] fold of each photo's identity; -1 for identities outside every fold.
        source: Where the pairs came from.
        digest: sha256 of the pairs (file or generation rule) and the photo ids used.
    """

    left: np.ndarray
    right: np.ndarray
    same: np.ndarray
    fold: np.ndarray
    photo_fold: np.ndarray
    source: str
    digest: str

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in np.unique(self.fold))


def load_pairs(labelled: LabelledSet, pairs_file: Path) -> PairsProtocol:
    """The LFW-format ``pairs.txt`` of the set; every photo of a person in fold k belongs to fold k.

    Raises:
        InputError: The file is not named pairs.txt, or names a photo the set lacks.
    """
    if pairs_file.name != "pairs.txt":
        raise InputError(f"pairs file must be an LFW pairs.txt, got {pairs_file}")
    pairs = read_pairs(pairs_file.parent)
    pos = labelled.index()
    missing = sorted({p for pr in pairs for p in (pr.left, pr.right) if p not in pos})
    if missing:
        raise InputError(f"{len(missing)} photos of {pairs_file} are not in the labelled set, e.g. {missing[0]}")
    person_fold: dict[str, int] = {}
    for pr in pairs:
        for p in (pr.left, pr.right):
            person_fold.setdefault(p.split("/")[0], pr.fold)
    photo_fold = np.array([person_fold.get(p.split("/")[0], -1) for p in labelled.paths], dtype=np.int64)
    left = np.array([pos[p.left] for p in pairs])
    right = np.array([pos[p.right] for p in pairs])
    used = {labelled.photo_ids[i] for i in np.concatenate([left, right])}
    digest = _digest_files([pairs_file], used)
    return PairsProtocol(left, right, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]),
                         photo_fold, str(pairs_file), digest)


def generate_pairs(labelled: LabelledSet, folds: int, seed: int) -> PairsProtocol:
    """All within-fold pairs, identities dealt into ``folds`` folds after a seeded shuffle."""
    names = sorted(set(labelled.identities))
    if len(names) < 2 * folds:
        raise InputError(f"{labelled.name}: {len(names)} identities are too few for {folds} folds")
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[j]: i % folds for i, j in enumerate(order)}
    photo_fold = np.array([fold_of[i] for i in labelled.identities], dtype=np.int64)
    ident = labelled.identity_codes()
    left, right = [], []
    for f in range(folds):
        idx = np.flatnonzero(photo_fold == f)
        iu, ju = np.triu_indices(len(idx), k=1)
        left.append(idx[iu])
        right.append(idx[ju])
    lft, rgt = np.concatenate(left), np.concatenate(right)
    rule = f"all within-fold pairs, {folds} identity folds, seed {seed}"
    digest = _digest_files([labelled.manifest], labelled.photo_ids, rule)
    return PairsProtocol(lft, rgt, ident[lft] == ident[rgt], photo_fold[lft], photo_fold, rule, digest)


# --------------------------------------------------------------------------------------------- 1:N data


@dataclass(frozen=True)
class SearchProtocol:
    """The 1:N archive: gallery records, probes with their mates' positions, planted duplicates, renewals.

    Identities are the labelled set's (after any identity fixes), so a probe whose person is enrolled
    under another name in the source labels is mated, and its mates are every gallery record of that person.

    Attributes:
        gallery: Gallery records (photo positions, most recent first).
        probes: Probe records (one photo each).
        mates: Per probe, int array of its mates' gallery positions (empty: a non-mated probe).
        gallery_identity: int [G] identity code of each gallery record.
        dup_pairs: int [D, 2] gallery positions of the planted duplicate enrolments.
        renewal_probes: One unused photo of each renewal person with a third photo, as probes.
        renewal_mates: Their mates' gallery positions.
        excluded_identities: Identities of every probe (kept out of 1:N calibration data).
        counts: Sizes, for the report.
        digest: sha256 of the protocol (records with set-relative paths, truth, identities) and its photo ids.
        files: The archive's CSV files.
    """

    gallery: Records
    probes: Records
    mates: list[np.ndarray]
    gallery_identity: np.ndarray
    dup_pairs: np.ndarray
    renewal_probes: Records
    renewal_mates: list[np.ndarray]
    excluded_identities: frozenset[str]
    counts: dict[str, int]
    digest: str
    files: dict[str, str] = field(default_factory=dict)

    @property
    def mated(self) -> np.ndarray:
        """bool [Q]: the probe has a mate in the gallery."""
        return np.array([len(m) > 0 for m in self.mates])


def sample_sizes(size: str) -> SampleSizes:
    """A :data:`facelink.sample.SIZES` name, or ``D,M,R,U,S`` counts (duplicates, mated probes, renewals,
    unmated probes, singles; -1 singles = every remaining person) for a small custom archive.

    Raises:
        InputError: Neither a known name nor five integers.
    """
    if size in SIZES:
        return SIZES[size]
    try:
        d, m, r, u, single = (int(x) for x in size.split(","))
    except ValueError:
        raise InputError(f"sample size {size!r}: expected one of {sorted(SIZES)} or D,M,R,U,S counts") from None
    return SampleSizes(duplicates=d, mated_probes=m, renewals=r, unmated_probes=u, singles=single)


def build_search_protocol(labelled: LabelledSet, out_dir: Path, size: str, seed: int) -> SearchProtocol:
    """Build the :mod:`facelink.sample` archive of the set into ``out_dir`` and index it by photo position.

    Args:
        labelled: The labelled set (its folder and manifest are the sample's source).
        out_dir: Where the archive's CSV files are written.
        size: ``small``, ``full`` or ``D,M,R,U,S`` (see :func:`sample_sizes`).
        seed: The archive's seed.

    Raises:
        InputError: Unknown size, or a set too small for it.
    """
    sizes = sample_sizes(size)
    try:
        build_sample(labelled.root, out_dir, sizes, seed)
    except ValueError as exc:
        raise InputError(f"{labelled.name} cannot hold the {size} 1:N archive: {exc}") from exc
    root = labelled.root.resolve()
    pos = labelled.index()
    code = labelled.identity_codes()
    truth = {r["record_id"]: r for r in _read_csv(out_dir / "truth.csv")}

    def records(name: str) -> tuple[Records, list[tuple[str, str, str]]]:
        by_record: dict[str, list[tuple[str, str]]] = defaultdict(list)
        canon = []
        for row in _read_csv(out_dir / name):
            rel = Path(row["path"]).resolve().relative_to(root).as_posix()
            by_record[row["record_id"]].append((row["captured_at"], rel))
            canon.append((row["record_id"], rel, row["captured_at"]))
        ids = sorted(by_record)
        photos = [[pos[rel] for _, rel in sorted(by_record[r], reverse=True)] for r in ids]
        return Records(ids, photos), canon

    gallery, g_canon = records("gallery.csv")
    probes, p_canon = records("probes.csv")
    g_identity = np.array([code[photos[0]] for photos in gallery.photos], dtype=np.int64)
    by_identity: dict[int, list[int]] = defaultdict(list)
    for g, c in enumerate(g_identity):
        by_identity[int(c)].append(g)

    def mates_of(photo: int) -> np.ndarray:
        return np.array(by_identity.get(int(code[photo]), []), dtype=np.int64)

    mates = [mates_of(photos[0]) for photos in probes.photos]
    planted: dict[str, list[int]] = defaultdict(list)
    for g, rid in enumerate(gallery.ids):
        if truth[rid]["kind"] == "planted_duplicate":
            planted[truth[rid]["identity"]].append(g)
    dups = sorted(tuple(v) for v in planted.values() if len(v) == 2)
    used = {p for photos in gallery.photos + probes.photos for p in photos}
    r_ids, r_photos = [], []
    for g, rid in enumerate(gallery.ids):
        if truth[rid]["kind"] != "renewal":
            continue
        spare = [i for i in np.flatnonzero(code == g_identity[g]) if i not in used]
        if spare:
            r_ids.append(f"renewal-probe:{rid}")
            r_photos.append([int(spare[0])])
    renewal = Records(r_ids, r_photos)
    excluded = frozenset(labelled.identities[p[0]] for p in probes.photos + r_photos)
    canon = json.dumps({"gallery": sorted(g_canon), "probes": sorted(p_canon),
                        "truth": sorted(tuple(sorted(t.items())) for t in truth.values()),
                        "identities": [labelled.identities[p[0]] for p in gallery.photos + probes.photos]})
    photo_ids = {labelled.photo_ids[p] for p in used} | {labelled.photo_ids[p[0]] for p in r_photos}
    n_mated = sum(len(m) > 0 for m in mates)
    counts = {"gallery_records": len(gallery), "gallery_photos": sum(len(p) for p in gallery.photos),
              "probes": len(probes), "mated_probes": n_mated, "nonmated_probes": len(probes) - n_mated,
              "planted_duplicate_pairs": len(dups), "renewal_probes": len(r_ids)}
    return SearchProtocol(
        gallery, probes, mates, g_identity, np.array(dups, dtype=np.int64).reshape(-1, 2), renewal,
        [mates_of(p[0]) for p in r_photos], excluded, counts, _digest_files([], photo_ids, canon),
        {"gallery": str(out_dir / "gallery.csv"), "probes": str(out_dir / "probes.csv"),
         "truth": str(out_dir / "truth.csv")},
    )


# --------------------------------------------------------------------------------------------- calibration


def fit_model_calibration(
    store: EmbeddingStore, variant: Variant, photos: np.ndarray, identity: np.ndarray, max_nonmates: int,
    seed: int, model_id: str, source: str,
) -> Calibration:
    """Fit a recogniser's cosine -> FMR map on comparisons among ``photos`` (those with a face).

    Non-mates are every different-identity pair when there are at most ``max_nonmates`` of them, else a
    seeded sample of that many; mates every same-identity pair (at most MAX_MATES, sampled).
    """
    x = store.get(variant)
    idx = photos[~np.isnan(x[photos, 0])]
    n = len(idx)
    if n * (n - 1) // 2 <= max_nonmates:
        iu, ju = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        iu, ju = rng.integers(0, n, int(max_nonmates * 1.1)), rng.integers(0, n, int(max_nonmates * 1.1))
        keep = iu != ju
        iu, ju = iu[keep], ju[keep]
    a, b = idx[iu], idx[ju]
    diff = identity[a] != identity[b]
    na, nb = a[diff][:max_nonmates], b[diff][:max_nonmates]
    nonmate = np.einsum("ij,ij->i", x[na].astype(np.float64), x[nb].astype(np.float64))
    ma, mb = _mate_pairs(idx, identity, seed)
    mate = np.einsum("ij,ij->i", x[ma].astype(np.float64), x[mb].astype(np.float64))
    return fit_calibration(np.clip(nonmate, -1, 1), np.clip(mate, -1, 1), model_id, source, fitted_at=FITTED_AT)


def _mate_pairs(idx: np.ndarray, identity: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i in idx:
        groups[int(identity[i])].append(int(i))
    a, b = [], []
    for members in groups.values():
        m = np.array(members)
        iu, ju = np.triu_indices(len(m), k=1)
        a.append(m[iu])
        b.append(m[ju])
    ma, mb = (np.concatenate(a), np.concatenate(b)) if a else (np.zeros(0, int), np.zeros(0, int))
    if len(ma) > MAX_MATES:
        pick = np.sort(np.random.default_rng(seed).choice(len(ma), MAX_MATES, replace=False))
        ma, mb = ma[pick], mb[pick]
    return ma, mb


def score_range(*arrays: np.ndarray) -> tuple[float, float]:
    """A score interval holding every finite value of ``arrays``, with a margin of 1."""
    vals = np.concatenate([a[np.isfinite(a)] for a in arrays])
    return float(np.floor(vals.min()) - 1.0), float(np.ceil(vals.max()) + 1.0)


# --------------------------------------------------------------------------------------------- 1:1 scoring


class PairScorer:
    """Scores photos of one fold against each other under a configuration.

    Fusion uses per-recogniser calibrations fitted on other folds; cohort normalisation a cohort of photos
    outside the fold (other folds and identities outside every fold). Templates do not apply: a 1:1
    comparison is photo against photo.
    """

    def __init__(self, config: EvalConfig, store: EmbeddingStore, photo_fold: np.ndarray, identity: np.ndarray,
                 max_nonmates: int, seed: int, model_ids: Mapping[str, str]) -> None:
        self.config = config
        self.store = store
        self.photo_fold = photo_fold
        self.identity = identity
        self.max_nonmates = max_nonmates
        self.seed = seed
        self.model_ids = model_ids
        self._cals: dict[tuple[int, ...], dict[str, Calibration]] = {}

    def fold_photos(self, fold: int) -> np.ndarray:
        return np.flatnonzero(self.photo_fold == fold)

    def calibrations(self, folds: Sequence[int]) -> dict[str, Calibration]:
        """Per-recogniser calibrations fitted on all pairs within each of ``folds`` (none unless fused)."""
        key = tuple(sorted(folds))
        if not self.config.calibrated_fusion:
            return {}
        if key not in self._cals:
            photos = np.flatnonzero(np.isin(self.photo_fold, key))
            self._cals[key] = {
                v.recogniser: fit_model_calibration(
                    self.store, v, photos, self.identity, self.max_nonmates, self.seed,
                    self.model_ids[v.recogniser], f"evaluation folds {list(key)}")
                for v in self.config.variants
            }
        return self._cals[key]

    def fold_matrix(self, fold: int, cals: Mapping[str, Calibration]) -> np.ndarray:
        """float64 [n_f, n_f] scores among the fold's photos (NaN without a face, NaN diagonal)."""
        idx = self.fold_photos(fold)
        per_model = []
        for v in self.config.variants:
            x = self.store.get(v)[idx].astype(np.float64)
            per_model.append(x @ x.T)
        s = fuse(per_model, [cals[v.recogniser] for v in self.config.variants] if self.config.calibrated_fusion
                 else [], self.config.scoring)
        np.fill_diagonal(s, np.nan)
        sc = self.config.scoring
        if sc.cohort_norm == "none":
            return s
        pool = np.flatnonzero(self.photo_fold != fold)
        cohort_per_model = []
        for v in self.config.variants:
            x = self.store.get(v).astype(np.float64)
            cohort_per_model.append(x[idx] @ x[pool].T)
        c = fuse(cohort_per_model, [cals[v.recogniser] for v in self.config.variants]
                 if self.config.calibrated_fusion else [], sc)
        cohort = cohort_stats_input(c, sc.cohort_exclude_top, sc.cohort_size)
        return normalise(s, cohort, cohort, sc.cohort_norm)

    def pair_scores(self, proto: PairsProtocol) -> np.ndarray:
        """Scores of the protocol's comparisons, each fold scored with calibrations from the other folds."""
        out = np.full(len(proto.left), np.nan)
        for f in proto.folds:
            cals = self.calibrations([g for g in proto.folds if g != f])
            m = self.fold_matrix(f, cals)
            local = {p: i for i, p in enumerate(self.fold_photos(f))}
            sel = np.flatnonzero(proto.fold == f)
            out[sel] = m[[local[p] for p in proto.left[sel]], [local[p] for p in proto.right[sel]]]
        return out

    def calibration_check(self, proto: PairsProtocol, targets: Sequence[float]) -> dict[str, Any]:
        """Observed FMR at calibrated thresholds on each held-back fold.

        For held-back fold h the score -> FMR map is fitted without h: a single recogniser's on every other
        fold; a fusion's per-recogniser maps on the folds other than h and h+1 and the fused map on fold h+1.
        The threshold for each target FMR is then applied to all different-identity pairs of fold h.
        """
        folds = proto.folds
        per_fold: dict[int, dict[float, dict[str, float]]] = {}
        for i, h in enumerate(folds):
            if self.config.calibrated_fusion:
                nxt = folds[(i + 1) % len(folds)]
                cals = self.calibrations([g for g in folds if g not in (h, nxt)])
                fit_folds = [nxt]
            else:
                cals, fit_folds = {}, [g for g in folds if g != h]
            train = [self._fold_pairs(g, cals) for g in fit_folds]
            nonmate = np.concatenate([t[0] for t in train])
            mate = np.concatenate([t[1] for t in train])
            test_nonmate, _ = self._fold_pairs(h, cals)
            cal = fit_calibration(nonmate, mate, self.config.name, f"folds {fit_folds}",
                                  score_range=score_range(nonmate, mate, test_nonmate), fitted_at=FITTED_AT)
            per_fold[h] = {}
            for t in targets:
                thr = cal.score_at_fmr(t)
                observed = float(np.mean(test_nonmate >= thr))
                per_fold[h][t] = {"threshold": thr, "observed_fmr": observed, "ratio": observed / t,
                                  "n_nonmate": int(test_nonmate.size)}
        worst = {t: max((per_fold[h][t]["ratio"] for h in folds), key=lambda r: abs(np.log(max(r, 1e-12))))
                 for t in targets}
        return {"per_fold": per_fold, "worst_ratio": worst,
                "within_2x": bool(all(0.5 <= w <= 2.0 for w in worst.values()))}

    def _fold_pairs(self, fold: int, cals: Mapping[str, Calibration]) -> tuple[np.ndarray, np.ndarray]:
        """(non-mate scores, mate scores) of all pairs within a fold with a face on both sides."""
        m = self.fold_matrix(fold, cals)
        ident = self.identity[self.fold_photos(fold)]
        iu, ju = np.triu_indices(len(m), k=1)
        s = m[iu, ju]
        ok = ~np.isnan(s)
        same = ident[iu] == ident[ju]
        return s[ok & ~same], s[ok & same]


# --------------------------------------------------------------------------------------------- 1:N scoring


@dataclass(frozen=True)
class SearchMatrices:
    """Raw (fused, not normalised) scores of a configuration on the 1:N protocol.

    Attributes:
        probe_gallery: float [Q, G].
        gallery_gallery: float [G, G], NaN diagonal.
        renewal_gallery: float [R, G].
    """

    probe_gallery: np.ndarray
    gallery_gallery: np.ndarray
    renewal_gallery: np.ndarray


def search_matrices(config: EvalConfig, store: EmbeddingStore, proto: SearchProtocol,
                    cals: Mapping[str, Calibration]) -> SearchMatrices:
    """Score probes, gallery records and renewal probes against the gallery under ``config``."""
    pg = config_record_scores(config, store, proto.probes, proto.gallery, cals)
    gg = config_record_scores(config, store, proto.gallery, proto.gallery, cals)
    np.fill_diagonal(gg, np.nan)
    rg = (config_record_scores(config, store, proto.renewal_probes, proto.gallery, cals)
          if len(proto.renewal_probes) else np.zeros((0, len(proto.gallery))))
    return SearchMatrices(pg, gg, rg)


def normalised(config: EvalConfig, m: SearchMatrices, cols: np.ndarray | None = None) -> SearchMatrices:
    """Cohort-normalise (per the configuration) the matrices, optionally on a subset of gallery columns."""
    pg, gg, rg = m.probe_gallery, m.gallery_gallery, m.renewal_gallery
    if cols is not None:
        pg, gg, rg = pg[:, cols], gg[np.ix_(cols, cols)], rg[:, cols]
    sc = config.scoring
    if sc.cohort_norm == "none":
        return SearchMatrices(pg, gg, rg)
    k, c = sc.cohort_exclude_top, sc.cohort_size
    g_cohort = cohort_stats_input(gg, k, c)

    def norm(q: np.ndarray) -> np.ndarray:
        return normalise(q, cohort_stats_input(q, k, c), g_cohort, sc.cohort_norm) if len(q) else q

    return SearchMatrices(norm(pg), normalise(gg, g_cohort, g_cohort, sc.cohort_norm), norm(rg))


def search_calibrations(config: EvalConfig, store: EmbeddingStore, labelled: LabelledSet, proto: SearchProtocol,
                        max_nonmates: int, seed: int, model_ids: Mapping[str, str]) -> dict[str, Calibration]:
    """Per-recogniser maps for 1:N fusion, fitted on the set's photos of people who are never probes."""
    if not config.calibrated_fusion:
        return {}
    pool = np.array([i for i, ident in enumerate(labelled.identities) if ident not in proto.excluded_identities])
    ident = labelled.identity_codes()
    return {v.recogniser: fit_model_calibration(store, v, pool, ident, max_nonmates, seed, model_ids[v.recogniser],
                                                 f"{labelled.name} photos of non-probe identities")
            for v in config.variants}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _digest_files(files: Sequence[Path], photo_ids: Any, extra: str = "") -> str:
    return data_digest(files, photo_ids, extra)
