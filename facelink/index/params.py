"""Choosing a FAISS index type and its parameters for one gallery partition.

The rules follow autofaiss's: exact search while it is cheap, an inverted file (IVF) while the raw
vectors fit in memory, product quantisation (PQ) codes once they do not. Embeddings are
L2-normalised and compared by inner product (cosine similarity) in every index kind.

Face embeddings are a hard case for IVF: identities spread over ~80 effective dimensions, so the ten
nearest neighbours of a probe (beyond its own mates) lie in many lists. On 1M synthetic galleries
fitted to mobilefacenet on LFW (and on the real LFW embeddings at small scale), IVF-Flat needs to
visit about half of the lists for recall@10 >= 0.98, which is no faster than exact search. The
default for galleries whose raw vectors fit is therefore ``ivf_fastscan``: IVF over 4-bit fast-scan
PQ codes with one sub-quantizer per dimension, scanned about ten times faster than floats, whose
best ``k · refine_k_factor`` candidates are re-ranked exactly against the raw vectors.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np

log = logging.getLogger(__name__)

IndexKind = Literal["flat", "ivf_flat", "ivf_fastscan", "ivf_pq"]
INDEX_KINDS: tuple[str, ...] = ("flat", "ivf_flat", "ivf_fastscan", "ivf_pq")

# faiss's k-means warns below 39 training points per centroid: centroids are then poorly placed.
MIN_POINTS_PER_CENTROID = 39
# Training on more than 64 points per centroid barely moves recall for clustered face embeddings but
# costs linear k-means time; 64 keeps IVF4096 training near 30 s on two cores (bench/bench_index.py).
TRAIN_POINTS_PER_CENTROID = 64
# Bytes stored per vector beside its code: the int64 id in the inverted list.
ID_BYTES = 8
PQ_SUBQUANTIZERS = (64, 32)
PQ_NBITS = 8
# Fast-scan codes are 4 bits per sub-quantizer (16 centroids, the SIMD lookup-table width).
FASTSCAN_NBITS = 4
# Re-ranking 8x more candidates than asked is enough with one 4-bit sub-quantizer per dimension: a
# factor of 64 gave the same recall on 1M synthetic faces (bench/bench_index.py).
REFINE_K_FACTOR = 8


@dataclass(frozen=True)
class IndexParams:
    """What to build for one partition.

    Attributes:
        kind: ``"flat"`` (exact ``IndexFlatIP``), ``"ivf_flat"``, ``"ivf_fastscan"`` (IVF, 4-bit
            fast-scan PQ, exact re-ranking) or ``"ivf_pq"``.
        nlist: number of IVF lists (k-means centroids); 0 for ``flat``.
        m: PQ subquantizers; 0 unless ``ivf_pq`` or ``ivf_fastscan``.
        nbits: bits per PQ subquantizer code; 0 unless ``ivf_pq`` or ``ivf_fastscan`` (4).
        train_size: vectors sampled to train the coarse quantizer (and PQ); 0 for ``flat``.
        nprobe_default: lists visited per query when no tuned value is known.
        kmeans_iters: k-means iterations when training the coarse quantizer.
        refine_k_factor: for ``ivf_fastscan``, candidates re-ranked per result wanted.
    """

    kind: IndexKind
    nlist: int = 0
    m: int = 0
    nbits: int = 0
    train_size: int = 0
    nprobe_default: int = 1
    kmeans_iters: int = 20
    refine_k_factor: int = REFINE_K_FACTOR

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"IndexParams.kind must be one of {INDEX_KINDS}, got {self.kind!r}")
        if self.kind == "flat":
            return
        if self.nlist < 1:
            raise ValueError(f"IndexParams.nlist must be >= 1 for {self.kind}, got {self.nlist}")
        if self.train_size < self.nlist:
            raise ValueError(f"IndexParams.train_size ({self.train_size}) must be >= nlist ({self.nlist})")
        if not 1 <= self.nprobe_default <= self.nlist:
            raise ValueError(f"IndexParams.nprobe_default must be in [1, nlist], got {self.nprobe_default}")
        if self.kind == "ivf_pq" and (self.m < 1 or not 1 <= self.nbits <= 16):
            raise ValueError(f"ivf_pq needs m >= 1 and 1 <= nbits <= 16, got m={self.m} nbits={self.nbits}")
        if self.kind == "ivf_fastscan" and (self.m < 2 or self.m % 2 or self.nbits != FASTSCAN_NBITS):
            raise ValueError(f"ivf_fastscan needs an even m and nbits=4, got m={self.m} nbits={self.nbits}")
        if self.refine_k_factor < 1:
            raise ValueError(f"IndexParams.refine_k_factor must be >= 1, got {self.refine_k_factor}")

    @property
    def factory_string(self) -> str:
        """The equivalent ``faiss.index_factory`` description, for index_infos and logs."""
        if self.kind == "flat":
            return "Flat"
        if self.kind == "ivf_flat":
            return f"IVF{self.nlist},Flat"
        if self.kind == "ivf_fastscan":
            return f"IVF{self.nlist},PQ{self.m}x{self.nbits}fs,RFlat"
        return f"IVF{self.nlist},PQ{self.m}x{self.nbits}"


def ivf_nlist(n: int, per_root: float = 4.0) -> int:
    """Number of IVF lists for ``n`` vectors: ``per_root·sqrt(n)`` rounded to the nearest power of two.

    A power of two keeps nlist stable while a partition grows a little between runs (a change of nlist
    means retraining). With the default 4, nlist is 1024 at 100k and 4096 at 1M (IVF-Flat and IVF-PQ,
    which visit few lists); fast-scan indexes visit about half of theirs and use ``per_root=1`` (256
    at 100k, 1024 at 1M), which makes training and adding four times cheaper at the same recall.
    The result is capped so that every centroid gets ``MIN_POINTS_PER_CENTROID`` training points.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    nlist = 2 ** max(0, round(math.log2(per_root * math.sqrt(n))))
    while nlist > 1 and nlist * MIN_POINTS_PER_CENTROID > n:
        nlist //= 2
    return nlist


def estimate_index_bytes(kind: IndexKind, n: int, dim: int, nlist: int = 0, m: int = 0, nbits: int = 8) -> int:
    """Approximate resident size of a filled index (codes, ids and centroids), in bytes."""
    if kind == "flat":
        return n * dim * 4 + n * ID_BYTES
    centroids = nlist * dim * 4
    if kind == "ivf_flat":
        return n * (dim * 4 + ID_BYTES) + centroids
    code_bytes = (m * nbits + 7) // 8
    pq_tables = m * (2**nbits) * (dim // max(m, 1)) * 4
    raw = n * dim * 4 if kind == "ivf_fastscan" else 0
    return n * (code_bytes + ID_BYTES) + raw + centroids + pq_tables


def choose_index_params(
    n: int, dim: int, memory_budget_bytes: int, flat_max: int = 50_000, fast_scan: bool = True
) -> IndexParams:
    """Pick the index kind and parameters for a partition of ``n`` vectors of ``dim`` dimensions.

    Rules:
        * ``n <= flat_max``: exact ``flat`` search (brute force is fast enough and recall is 1).
        * Raw vectors fit the budget (``n·(4·dim + 8)`` bytes, plus ``dim/2`` bytes of codes for
          fast scan): ``ivf_fastscan`` with ``nlist = ivf_nlist(n, 1)`` (``sqrt(n)`` to a power of two),
          ``m = dim`` 4-bit sub-quantizers and ``nprobe_default = nlist / 2``; or, with
          ``fast_scan=False``, ``ivf_flat`` with ``nlist = ivf_nlist(n)`` (``4·sqrt(n)``) and
          ``nprobe_default = nlist / 64`` (at least 8).
        * Otherwise ``ivf_pq`` with ``nlist = ivf_nlist(n)``, ``nbits = 8`` and ``m = 64``, or ``m = 32``
          when 64-byte codes do not fit either (``m`` must divide ``dim``). Its recall on face
          embeddings is limited by the codes (no re-ranking): split partitions rather than rely on it.
        * Training sample: ``train_size = min(n, max(39, 64)·nlist)``: faiss warns below 39 points per
          centroid, and more than 64 adds k-means time without recall. The default nprobe is a
          starting point that ``nprobe_for_recall`` replaces with a measured one.

    Args:
        n: vectors in the partition.
        dim: embedding dimension.
        memory_budget_bytes: what one filled index may occupy in an executor's memory.
        flat_max: largest partition searched exactly.
        fast_scan: prefer ``ivf_fastscan`` to ``ivf_flat`` when raw vectors fit.

    Raises:
        ValueError: a non-positive argument, or no index kind fits the budget.
    """
    if n < 1 or dim < 1 or memory_budget_bytes < 1:
        raise ValueError(f"n, dim and memory_budget_bytes must be > 0, got {n}, {dim}, {memory_budget_bytes}")
    if n <= flat_max:
        if estimate_index_bytes("flat", n, dim) > memory_budget_bytes:
            raise ValueError(f"a flat index of {n} x {dim} does not fit {memory_budget_bytes} bytes")
        return IndexParams(kind="flat")
    params = _raw_vector_params(n, dim, memory_budget_bytes, fast_scan) or _pq_params(n, dim, memory_budget_bytes)
    if params is None:
        raise ValueError(
            f"no index of {n} x {dim} vectors fits {memory_budget_bytes} bytes: split the partition or raise the budget"
        )
    log.info("n=%d dim=%d: %s (train on %d)", n, dim, params.factory_string, params.train_size)
    return params


def _train_size(n: int, nlist: int) -> int:
    return min(n, max(MIN_POINTS_PER_CENTROID, TRAIN_POINTS_PER_CENTROID) * nlist)


def _raw_vector_params(n: int, dim: int, budget: int, fast_scan: bool) -> IndexParams | None:
    if fast_scan and dim % 2 == 0:
        nlist = ivf_nlist(n, per_root=1.0)
        if estimate_index_bytes("ivf_fastscan", n, dim, nlist, dim, FASTSCAN_NBITS) > budget:
            return None
        return IndexParams(
            kind="ivf_fastscan",
            nlist=nlist,
            m=dim,
            nbits=FASTSCAN_NBITS,
            train_size=_train_size(n, nlist),
            nprobe_default=max(1, nlist // 2),
        )
    nlist = ivf_nlist(n)
    if estimate_index_bytes("ivf_flat", n, dim, nlist) > budget:
        return None
    nprobe = min(nlist, max(8, nlist // 64))
    return IndexParams(kind="ivf_flat", nlist=nlist, train_size=_train_size(n, nlist), nprobe_default=nprobe)


def _pq_params(n: int, dim: int, budget: int) -> IndexParams | None:
    nlist = ivf_nlist(n)
    for m in PQ_SUBQUANTIZERS:
        if dim % m == 0 and estimate_index_bytes("ivf_pq", n, dim, nlist, m, PQ_NBITS) <= budget:
            nprobe = min(nlist, max(8, nlist // 64))
            return IndexParams(
                kind="ivf_pq",
                nlist=nlist,
                m=m,
                nbits=PQ_NBITS,
                train_size=_train_size(n, nlist),
                nprobe_default=nprobe,
            )
    return None


def ivf_search_params(nprobe: int) -> faiss.SearchParametersIVF:
    """Per-call IVF search parameters: thread-safe, unlike setting ``index.nprobe`` on a shared index."""
    params = faiss.SearchParametersIVF()
    params.nprobe = int(nprobe)
    return params


def search_params(index: faiss.Index, nprobe: int) -> faiss.SearchParameters | None:
    """Per-call parameters visiting ``nprobe`` lists of ``index``; ``None`` for a non-IVF index.

    For an ``IndexRefine`` over an IVF (``ivf_fastscan``) the IVF parameters are nested in refine
    parameters carrying the index's own ``k_factor``.
    """
    if faiss.try_extract_index_ivf(index) is None:
        return None
    ivf_params = ivf_search_params(nprobe)
    if not isinstance(index, faiss.IndexRefine):
        return ivf_params
    params = faiss.IndexRefineSearchParameters()
    params.k_factor = float(index.k_factor)
    params.base_index_params = ivf_params
    # SWIG keeps only a raw pointer to the nested parameters: keep the Python object alive with them.
    params.referenced_objects = [ivf_params]  # type: ignore[attr-defined]
    return params


def nprobe_ladder(nlist: int) -> list[int]:
    """nprobe values ``1, 2, 3, 4, 6, 8, 12, 16, ...`` (powers of two and 1.5 times them) up to ``nlist``.

    Half-steps between doublings matter when the answer is a large share of the lists, as for face
    embeddings: a plain doubling ladder jumps from half the lists to all of them.
    """
    ladder = {nlist}
    power = 1
    while power < nlist:
        ladder.update(v for v in (power, power + power // 2) if v < nlist)
        power *= 2
    return sorted(ladder)


def knn_recall(found_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k ids present in its approximate top-k.

    Args:
        found_ids: approximate result ids, int64 ``[Q, k]`` (-1 for missing).
        exact_ids: exact result ids, int64 ``[Q, k]`` (-1 where fewer than k exist; not counted).
    """
    if found_ids.shape != exact_ids.shape:
        raise ValueError(f"id arrays differ in shape: {found_ids.shape} vs {exact_ids.shape}")
    hits = 0
    total = 0
    for found_row, exact_row in zip(found_ids, exact_ids, strict=True):
        wanted = exact_row[exact_row >= 0]
        hits += int(np.isin(wanted, found_row).sum())
        total += wanted.size
    return hits / total if total else 1.0


def nprobe_for_recall(
    index: faiss.Index, xq_sample: np.ndarray, exact_ids: np.ndarray, target_recall: float, k: int
) -> int:
    """Smallest nprobe on the doubling ladder whose recall@k on a query sample reaches the target.

    Args:
        index: a filled index; for a non-IVF index the answer is 1.
        xq_sample: float32 queries ``[Q, d]``.
        exact_ids: the exact top-k ids of those queries ``[Q, k]``, in the index's id space.
        target_recall: e.g. 0.98.
        k: neighbours per query.

    Returns:
        The nprobe; ``nlist`` (with a warning) when even that misses the target, as PQ codes can.
    """
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return 1
    xq = np.ascontiguousarray(xq_sample, dtype=np.float32)
    recall = 0.0
    for nprobe in nprobe_ladder(ivf.nlist):
        _, found = index.search(xq, k, params=search_params(index, nprobe))
        recall = knn_recall(found, exact_ids)
        log.debug("nprobe=%d recall@%d=%.4f", nprobe, k, recall)
        if recall >= target_recall:
            return nprobe
    log.warning("recall@%d target %.3f not reached (%.4f at nprobe=nlist)", k, target_recall, recall)
    return int(ivf.nlist)


#: Score levels at which ``nprobe_by_score`` measures the recall of neighbours scoring at least that much.
#: Matching and de-duplication store only candidates above a calibrated floor (0.498 for a 1M synthetic
#: gallery, bench/results/match.json), so what they need is the nprobe that finds those, not the nprobe
#: that orders the ten nearest strangers (``nprobe_for_recall``), which on face embeddings is several
#: times larger.
SCORE_LEVELS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
#: Fewest exact neighbours above a level (over the query sample) for its recall to be trusted. With 50, the
#: partitions of a 50k-vector gallery got nprobes that reached 0.98 on the sample and 0.95 on new probes
#: (bench_match, 4 x 12.5k); 200 leaves such partitions on the top-10 nprobe.
MIN_LEVEL_PAIRS = 200


def nprobe_by_score(
    index: faiss.Index,
    xq_sample: np.ndarray,
    exact_ids: np.ndarray,
    exact_scores: np.ndarray,
    target_recall: float,
    k: int,
    self_ids: np.ndarray | None = None,
    levels: tuple[float, ...] = SCORE_LEVELS,
    min_pairs: int = MIN_LEVEL_PAIRS,
) -> dict[str, int]:
    """For each score level, the smallest nprobe whose recall of the exact top-k neighbours scoring at
    least that level reaches ``target_recall``.

    Args:
        index: a filled index (a non-IVF index gives 1 for every level).
        xq_sample: float32 queries ``[Q, d]``.
        exact_ids: exact top-k ids ``[Q, k]`` in the index's id space.
        exact_scores: their scores ``[Q, k]``.
        target_recall: e.g. 0.98.
        k: neighbours per query.
        self_ids: for queries drawn from the index, each query's own id (found trivially, not counted).
        levels: score levels.
        min_pairs: levels with fewer exact neighbours above them are left out.

    Returns:
        ``{"0.40": nprobe, ...}`` (keys formatted to two decimals), only for levels with enough pairs;
        a level the whole ladder does not bring to the target maps to ``nlist``.
    """
    wanted = exact_ids >= 0
    if self_ids is not None:
        wanted &= exact_ids != np.asarray(self_ids, dtype=np.int64)[:, None]
    masks = {f"{level:.2f}": wanted & (exact_scores >= level) for level in levels}
    masks = {key: mask for key, mask in masks.items() if int(mask.sum()) >= min_pairs}
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return dict.fromkeys(masks, 1)
    xq = np.ascontiguousarray(xq_sample, dtype=np.float32)
    out: dict[str, int] = {}
    for nprobe in nprobe_ladder(ivf.nlist):
        if len(out) == len(masks):
            break
        _, found = index.search(xq, k, params=search_params(index, nprobe))
        hit = (exact_ids[:, :, None] == found[:, None, :]).any(axis=2)
        for key, mask in masks.items():
            if key not in out and hit[mask].mean() >= target_recall:
                out[key] = nprobe
    return {key: out.get(key, int(ivf.nlist)) for key in masks}


def nprobe_for_floor(knn_nprobe: int, by_score: dict[str, int] | None, floor: float) -> int:
    """The nprobe to search with when only candidates scoring at least ``floor`` are kept.

    The highest measured level at or below the floor answers (its neighbours include the floor's, so its
    nprobe is enough), capped by the top-k nprobe ``knn_nprobe``; with no such level, ``knn_nprobe``.
    """
    levels = [(float(key), value) for key, value in (by_score or {}).items() if float(key) <= floor]
    return min(max(levels)[1], int(knn_nprobe)) if levels else int(knn_nprobe)
