"""Training, filling, merging and storing FAISS indexes of face embeddings.

The flow mirrors autofaiss's distributed build: train one empty index on a sample (driver), serialise
it, fill one shard per executor with ``add_shard`` from those bytes, then ``merge_shards`` the filled
shards. Every index stores int64 *positions* as ids: position ``i`` is row ``i`` of the partition's ids
array (see ``facelink.index.search.PartitionIndex``), so shards are given disjoint position ranges.
An ``ivf_fastscan`` index gets its exact re-ranking stage last, from all raw vectors in position
order: ``attach_refine(merge_shards(shards), vectors, k_factor)``.

Thread counts are process-wide in FAISS (OpenMP); functions here change them only when given
``threads``, never implicitly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from facelink.index.params import IndexParams, knn_recall, search_params

log = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1 << 22


class IndexIntegrityError(ValueError):
    """A stored index or ids file does not match the sha256 recorded for it."""


@contextmanager
def timed(label: str) -> Iterator[None]:
    """Log how long the enclosed block took, at INFO on this module's logger."""
    start = time.perf_counter()
    try:
        yield
    finally:
        log.info("%s took %.2f s", label, time.perf_counter() - start)


def set_threads(threads: int | None) -> None:
    """Pin FAISS's OpenMP threads for this process; ``None`` leaves the current setting alone."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    faiss.omp_set_num_threads(threads)


@contextmanager
def omp_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` OpenMP threads, then restore the previous count."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def as_float32_matrix(vectors: np.ndarray, name: str = "vectors", dim: int | None = None) -> np.ndarray:
    """Return ``vectors`` as a C-contiguous float32 ``[n, d]`` array, checking the shape."""
    if not isinstance(vectors, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(vectors).__name__}")
    if vectors.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, d], got shape {vectors.shape}")
    if dim is not None and vectors.shape[1] != dim:
        raise ValueError(f"{name} has dimension {vectors.shape[1]}, the index has {dim}")
    return np.ascontiguousarray(vectors, dtype=np.float32)


def empty_index(dim: int, params: IndexParams) -> faiss.Index:
    """An untrained index of ``params.kind`` for inner-product search over ``dim`` dimensions."""
    if params.kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    quantizer = faiss.IndexFlatIP(dim)
    metric = faiss.METRIC_INNER_PRODUCT
    index: faiss.IndexIVF
    if params.kind != "ivf_flat" and dim % params.m:
        raise ValueError(f"PQ m={params.m} must divide the dimension {dim}")
    if params.kind == "ivf_flat":
        index = faiss.IndexIVFFlat(quantizer, dim, params.nlist, metric)
    elif params.kind == "ivf_fastscan":
        index = faiss.IndexIVFPQFastScan(quantizer, dim, params.nlist, params.m, params.nbits, metric)
    else:
        index = faiss.IndexIVFPQ(quantizer, dim, params.nlist, params.m, params.nbits, metric)
    # The IVF index takes ownership of its quantizer, or the quantizer dies with this frame's wrapper.
    index.own_fields = True
    quantizer.this.disown()  # type: ignore[attr-defined]
    index.nprobe = params.nprobe_default
    return index


def train_index(sample: np.ndarray, params: IndexParams, seed: int = 0, threads: int | None = None) -> faiss.Index:
    """Train an empty index on a sample of the partition's vectors.

    IVF centroids come from spherical k-means (centroids renormalised each iteration), which suits
    L2-normalised embeddings searched by inner product.

    Args:
        sample: float32 ``[n_train, d]``; at least ``params.nlist`` rows for IVF kinds.
        params: from ``choose_index_params``.
        seed: k-means seed, so that a rebuild gives the same centroids.
        threads: OpenMP threads for training; ``None`` keeps the process setting.

    Returns:
        A trained, empty index whose ids will be positions assigned by ``add_with_ids`` (for
        ``ivf_fastscan``, the IVF part: see ``attach_refine``).
    """
    set_threads(threads)
    xt = as_float32_matrix(sample, "sample")
    index = empty_index(xt.shape[1], params)
    if params.kind == "flat":
        return index
    if xt.shape[0] < params.nlist:
        raise ValueError(f"{xt.shape[0]} training vectors for nlist={params.nlist}: need at least nlist")
    ivf = faiss.extract_index_ivf(index)
    cp = ivf.cp
    cp.spherical = True
    cp.niter = params.kmeans_iters
    cp.seed = seed
    cp.max_points_per_centroid = max(1, -(-xt.shape[0] // params.nlist))
    with timed(f"training {params.factory_string} on {xt.shape[0]} vectors"):
        faiss.Clustering(xt.shape[1], params.nlist, cp).train(xt, ivf.quantizer)
        # Only the PQ codebooks are left to train (the quantizer is full). They are hundreds of tiny
        # k-means whose OpenMP barriers stall when cores are shared: 2 threads took 25 s where 1 took
        # 2 s for PQ128x4 on 16k vectors, so they train on one thread.
        with omp_threads(1):
            index.train(xt)
    return index


def serialize(index: faiss.Index) -> bytes:
    """The index as bytes (for broadcasting a trained index to executors)."""
    return bytes(faiss.serialize_index(index))


def deserialize(data: bytes) -> faiss.Index:
    """Inverse of ``serialize``."""
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def positions(start_id: int, n: int) -> np.ndarray:
    """The int64 ids ``start_id .. start_id + n - 1``."""
    if start_id < 0:
        raise ValueError(f"start_id must be >= 0, got {start_id}")
    return np.arange(start_id, start_id + n, dtype=np.int64)


def add_shard(
    trained_index_bytes: bytes, vectors: np.ndarray, start_id: int, threads: int | None = None
) -> faiss.Index:
    """Fill a copy of a trained index with one shard of vectors (run on an executor).

    Args:
        trained_index_bytes: ``serialize(train_index(...))``.
        vectors: float32 ``[n, d]``; row ``i`` gets id ``start_id + i``.
        start_id: first position of this shard in the partition.
        threads: OpenMP threads; ``None`` keeps the process setting.
    """
    set_threads(threads)
    index = deserialize(trained_index_bytes)
    if not index.is_trained:
        raise ValueError("add_shard needs a trained index")
    xb = as_float32_matrix(vectors, dim=index.d)
    index.add_with_ids(xb, positions(start_id, xb.shape[0]))
    return index


def _centroids(index: faiss.Index) -> np.ndarray | None:
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return None
    return np.asarray(ivf.quantizer.reconstruct_n(0, ivf.nlist))


def attach_refine(index: faiss.Index, vectors: np.ndarray, k_factor: int) -> faiss.IndexRefine:
    """Wrap a filled index with exact re-ranking over ``vectors`` (``ivf_fastscan``'s last step).

    Args:
        index: a filled index whose ids are positions ``0 .. n - 1``.
        vectors: float32 ``[n, d]``, row ``i`` being the vector at position ``i``.
        k_factor: candidates re-ranked per result wanted.
    """
    xb = as_float32_matrix(vectors, dim=index.d)
    if xb.shape[0] != index.ntotal:
        raise ValueError(f"{xb.shape[0]} vectors to re-rank {index.ntotal} indexed ones")
    refine = faiss.IndexFlatIP(index.d)
    refine.add(xb)
    wrapped = faiss.IndexRefine(index, refine)
    wrapped.k_factor = float(k_factor)
    # The wrapper owns both parts, so that they live and die with it.
    wrapped.own_fields = True
    wrapped.own_refine_index = True
    index.this.disown()  # type: ignore[attr-defined]
    refine.this.disown()  # type: ignore[attr-defined]
    return wrapped


def merge_shards(shards: Sequence[faiss.Index]) -> faiss.Index:
    """Merge filled shards of one trained index into the first shard, which is returned.

    IVF shards are merged list by list (``merge_from``, ids kept); flat shards are concatenated. The
    shards must come from the same trained index: their coarse centroids are compared.
    """
    if not shards:
        raise ValueError("merge_shards needs at least one shard")
    if any(isinstance(shard, faiss.IndexRefine) for shard in shards):
        raise ValueError("merge shards before attach_refine: re-ranked indexes cannot be merged")
    merged = shards[0]
    reference = _centroids(merged)
    for shard in shards[1:]:
        centroids = _centroids(shard)
        same = (reference is None and centroids is None) or (
            reference is not None and centroids is not None and np.array_equal(reference, centroids)
        )
        if not same or shard.d != merged.d:
            raise ValueError("shards come from different trained indexes and cannot be merged")
        merged.merge_from(shard, 0)
    return merged


def build_partition_index(
    vectors: np.ndarray,
    params: IndexParams,
    seed: int = 0,
    threads: int | None = None,
    shard_size: int = 250_000,
) -> faiss.Index:
    """Train on a seeded sample of ``vectors`` and add them all; row ``i`` gets id ``i``.

    The single-process equivalent of train, ``add_shard`` per shard, ``merge_shards`` and, for
    ``ivf_fastscan``, ``attach_refine``.
    """
    set_threads(threads)
    xb = as_float32_matrix(vectors)
    if params.kind == "flat":
        sample = xb[:0]
    else:
        rng = np.random.default_rng(seed)
        size = min(params.train_size, xb.shape[0])
        sample = xb[np.sort(rng.choice(xb.shape[0], size=size, replace=False))]
    index = train_index(sample, params, seed=seed)
    with timed(f"adding {xb.shape[0]} vectors"):
        for start in range(0, xb.shape[0], shard_size):
            chunk = xb[start : start + shard_size]
            index.add_with_ids(chunk, positions(start, chunk.shape[0]))
    if params.kind == "ivf_fastscan":
        return attach_refine(index, xb, params.refine_k_factor)
    return index


def add_incremental(index: faiss.Index, vectors: np.ndarray, start_id: int, threads: int | None = None) -> None:
    """Add new vectors to a filled, trained index in place, without retraining.

    New vectors go to the lists of their nearest existing centroids, so recall holds while the new
    data resembles what the index was trained on; retrain when a partition has grown several-fold.

    Args:
        index: a trained index built here.
        vectors: float32 ``[n, d]``.
        start_id: must equal ``index.ntotal`` so that positions stay dense ``0 .. ntotal - 1``.
        threads: OpenMP threads; ``None`` keeps the process setting.
    """
    set_threads(threads)
    if not index.is_trained:
        raise ValueError("add_incremental needs a trained index")
    if start_id != index.ntotal:
        raise ValueError(f"start_id {start_id} must equal index.ntotal ({index.ntotal}) to keep ids dense")
    xb = as_float32_matrix(vectors, dim=index.d)
    if isinstance(index, faiss.IndexRefine):
        # IndexRefine numbers added vectors ntotal, ntotal + 1, ...: the positions checked above.
        index.add(xb)
    else:
        index.add_with_ids(xb, positions(start_id, xb.shape[0]))


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def write_index(index: faiss.Index, path: str | Path) -> str:
    """Write an index atomically (temporary file in the same folder, then rename) and return its sha256."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        digest = file_sha256(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("wrote %s (%d vectors, sha256 %s)", target, index.ntotal, digest[:12])
    return digest


def read_index(path: str | Path, expected_sha256: str) -> faiss.Index:
    """Read an index after checking the file's sha256.

    Raises:
        IndexIntegrityError: the digest differs from ``expected_sha256``.
    """
    actual = file_sha256(path)
    if actual != expected_sha256.lower():
        raise IndexIntegrityError(f"{path}: sha256 {actual} does not match the expected {expected_sha256}")
    return faiss.read_index(str(path))


def exact_search(xb: np.ndarray, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-k: scores float32 ``[Q, k]`` and row positions int64 ``[Q, k]``."""
    flat = faiss.IndexFlatIP(xb.shape[1])
    flat.add(as_float32_matrix(xb, "xb"))
    scores, ids = flat.search(as_float32_matrix(xq, "xq", dim=xb.shape[1]), k)
    return scores, ids


def recall_at_k(index: faiss.Index, xb: np.ndarray, xq: np.ndarray, k: int, nprobe: int) -> float:
    """Recall@k of ``index`` against exact ``IndexFlatIP`` search over ``xb``.

    Args:
        index: holds ``xb`` with row ``i`` at id ``i`` (as ``build_partition_index`` assigns).
        xb: float32 ``[n, d]`` vectors in the index.
        xq: float32 ``[Q, d]`` queries.
        k: neighbours per query.
        nprobe: lists visited (ignored for flat indexes).
    """
    _, exact_ids = exact_search(xb, xq, k)
    queries = as_float32_matrix(xq, "xq", dim=index.d)
    _, found = index.search(queries, k, params=search_params(index, nprobe))
    return knn_recall(found, exact_ids)
