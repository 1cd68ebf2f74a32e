"""Top-k search over a gallery split into partition indexes, and their per-worker loading cache.

Each partition's index stores positions; its ids array maps positions to global face ids. A query is
searched in every selected partition and the candidates are merged into one global top-k.

Index and ids files are read from the lake through ``facelink.lake.fs.LakeFs``: a file on an object store is
copied once per machine into a local cache folder keyed by the manifest's sha256 (``LakeFs.cached_copy``),
never read from a path that only the driver has.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from facelink.index.build import IndexIntegrityError, as_float32_matrix, file_sha256, read_index, set_threads
from facelink.index.params import search_params
from facelink.lake.fs import LakeFs, worker_cache_dir

log = logging.getLogger(__name__)

MANIFEST_KEYS = ("partition", "index_path", "ids_path", "index_sha256", "ids_sha256", "nprobe")
# Searchers kept per Python worker: the current gallery version and the one before it, so a job that
# straddles a publication does not reload on every batch.
CACHE_MAX_ENTRIES = 2


@dataclass(frozen=True)
class PartitionIndex:
    """One partition's index and the global face id of each stored position.

    Attributes:
        partition: partition name (unique within a searcher).
        index: a filled FAISS index whose ids are positions ``0 .. ntotal - 1``.
        ids: int64 ``[ntotal]``; ``ids[p]`` is the face id at position ``p``.
    """

    partition: str
    index: faiss.Index
    ids: np.ndarray

    def __post_init__(self) -> None:
        if self.ids.dtype != np.int64 or self.ids.ndim != 1:
            got = f"{self.ids.dtype} {self.ids.shape}"
            raise TypeError(f"partition {self.partition!r}: ids must be 1-D int64, got {got}")
        if self.ids.shape[0] != self.index.ntotal:
            raise ValueError(f"partition {self.partition!r}: {self.ids.shape[0]} ids for {self.index.ntotal} vectors")


class GallerySearcher:
    """Global top-k inner-product search across partition indexes.

    Ties in score are broken by smaller face id, then smaller partition index, so results do not
    depend on partition order or thread timing.
    """

    def __init__(self, partitions: Sequence[PartitionIndex], nprobe: int | Mapping[str, int]) -> None:
        """Check the partitions and prepare their search parameters.

        Args:
            partitions: the partition indexes, with unique names and one dimension.
            nprobe: lists visited per query, one value or one per partition name (ignored for flat).

        Raises:
            ValueError: no partitions, duplicate names, mixed dimensions or a missing nprobe.
        """
        if not partitions:
            raise ValueError("GallerySearcher needs at least one partition")
        names = [p.partition for p in partitions]
        if len(set(names)) != len(names):
            raise ValueError(f"partition names must be unique, got {names}")
        dims = {p.index.d for p in partitions}
        if len(dims) != 1:
            raise ValueError(f"partitions differ in dimension: {sorted(dims)}")
        self.partitions = list(partitions)
        self.dim = dims.pop()
        self._position = {name: i for i, name in enumerate(names)}
        self._params = [self._search_params(p, nprobe) for p in self.partitions]

    @staticmethod
    def _search_params(part: PartitionIndex, nprobe: int | Mapping[str, int]) -> faiss.SearchParameters | None:
        if faiss.try_extract_index_ivf(part.index) is None:
            return None
        if isinstance(nprobe, Mapping):
            if part.partition not in nprobe:
                raise ValueError(f"no nprobe given for partition {part.partition!r}")
            value = int(nprobe[part.partition])
        else:
            value = int(nprobe)
        if value < 1:
            raise ValueError(f"nprobe must be >= 1, got {value} for partition {part.partition!r}")
        return search_params(part.index, value)

    @property
    def partition_names(self) -> list[str]:
        """Names in the order that ``partition_idx`` values refer to."""
        return [p.partition for p in self.partitions]

    def search(
        self, xq: np.ndarray, k: int, partitions: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Search the selected partitions and merge their results into a global top-k.

        Args:
            xq: float32 queries ``[Q, d]``, L2-normalised.
            k: results per query.
            partitions: names to search; ``None`` searches all.

        Returns:
            ``scores`` float32 ``[Q, k]`` (descending, ``-inf`` padding), ``ids`` int64 ``[Q, k]`` global
            face ids (``-1`` padding) and ``partition_idx`` int32 ``[Q, k]`` indexes into
            ``partition_names`` (``-1`` padding).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = as_float32_matrix(xq, "xq", dim=self.dim)
        selected = self._select(partitions)
        n_queries = queries.shape[0]
        all_scores = [np.full((n_queries, 0), -np.inf, dtype=np.float32)]
        all_ids = [np.full((n_queries, 0), -1, dtype=np.int64)]
        all_parts = [np.full((n_queries, 0), -1, dtype=np.int32)]
        for i in selected:
            scores, ids = self._search_one(i, queries, k)
            all_scores.append(scores)
            all_ids.append(ids)
            all_parts.append(np.where(ids >= 0, i, -1).astype(np.int32))
        return merge_topk(np.hstack(all_scores), np.hstack(all_ids), np.hstack(all_parts), k)

    def _select(self, partitions: Sequence[str] | None) -> list[int]:
        if partitions is None:
            return list(range(len(self.partitions)))
        if isinstance(partitions, str):
            raise TypeError(f"partitions must be a list of names, got the string {partitions!r}")
        unknown = [name for name in partitions if name not in self._position]
        if unknown:
            raise ValueError(f"unknown partitions {unknown}; known: {self.partition_names}")
        return sorted({self._position[name] for name in partitions})

    def _search_one(self, i: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        part = self.partitions[i]
        k_part = min(k, part.index.ntotal)
        if k_part == 0:
            shape = (queries.shape[0], 0)
            return np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.int64)
        scores, found = part.index.search(queries, k_part, params=self._params[i])
        valid = found >= 0
        ids = np.where(valid, part.ids[np.where(valid, found, 0)], -1)
        return np.where(valid, scores, -np.inf).astype(np.float32), ids.astype(np.int64)


def merge_topk(
    scores: np.ndarray, ids: np.ndarray, parts: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep each row's k best candidates: higher score first, then smaller id, then smaller partition.

    Args:
        scores: float32 ``[Q, M]``; ``-inf`` marks an empty slot.
        ids: int64 ``[Q, M]``; ``-1`` marks an empty slot.
        parts: int32 ``[Q, M]``.
        k: results kept; rows with fewer than k candidates are padded.
    """
    n_queries, n_candidates = scores.shape
    if n_candidates < k:
        pad = k - n_candidates
        scores = np.hstack([scores, np.full((n_queries, pad), -np.inf, dtype=np.float32)])
        ids = np.hstack([ids, np.full((n_queries, pad), -1, dtype=np.int64)])
        parts = np.hstack([parts, np.full((n_queries, pad), -1, dtype=np.int32)])
    empty = ids < 0
    # Empty slots sort last whatever their stand-in id: sort keys are (empty, -score, id, partition).
    order = np.lexsort((parts, ids, -scores.astype(np.float64), empty), axis=-1)[:, :k]
    take = np.take_along_axis
    top_scores = take(scores, order, 1).astype(np.float32)
    return top_scores, take(ids, order, 1), take(parts, order, 1).astype(np.int32)


def _check_manifest_row(row: Mapping[str, Any]) -> None:
    missing = [key for key in MANIFEST_KEYS if key not in row]
    if missing:
        raise ValueError(f"manifest row for {row.get('partition', '?')!r} lacks {missing}")


def load_ids(path: str, expected_sha256: str) -> np.ndarray:
    """Load a partition's int64 ids ``.npy`` after checking its sha256."""
    actual = file_sha256(path)
    if actual != expected_sha256.lower():
        raise IndexIntegrityError(f"{path}: sha256 {actual} does not match the expected {expected_sha256}")
    ids = np.load(path, allow_pickle=False)
    if ids.dtype != np.int64 or ids.ndim != 1:
        raise IndexIntegrityError(f"{path}: ids must be a 1-D int64 array, got {ids.dtype} {ids.shape}")
    return np.asarray(ids)


def load_searcher(manifest_rows: Sequence[Mapping[str, Any]], threads: int | None = None,
                  lake: LakeFs | None = None, cache_dir: str | None = None) -> GallerySearcher:
    """Build a searcher from manifest rows, verifying every file's sha256.

    Args:
        manifest_rows: one mapping per partition with ``partition``, ``index_path``, ``ids_path``,
            ``index_sha256``, ``ids_sha256`` and ``nprobe``; the paths are lake URIs.
        threads: OpenMP threads for searching; ``None`` keeps the process setting.
        lake: the lake's filesystem (its object-store settings); ``None``: local files only.
        cache_dir: where remote files are copied (default ``facelink.lake.fs.worker_cache_dir()``).

    Raises:
        ValueError: a row lacks a key.
        IndexIntegrityError: a file does not match its digest.
    """
    set_threads(threads)
    lake = lake if lake is not None else LakeFs()
    cache = cache_dir or worker_cache_dir()
    parts: list[PartitionIndex] = []
    nprobe: dict[str, int] = {}
    for row in manifest_rows:
        _check_manifest_row(row)
        name = str(row["partition"])
        index_sha, ids_sha = str(row["index_sha256"]).lower(), str(row["ids_sha256"]).lower()
        index = read_index(lake.cached_copy(str(row["index_path"]), index_sha, cache), index_sha)
        ids = load_ids(lake.cached_copy(str(row["ids_path"]), ids_sha, cache), ids_sha)
        parts.append(PartitionIndex(name, index, ids))
        nprobe[name] = int(row["nprobe"])
    log.info("loaded %d partitions, %d vectors", len(parts), sum(p.index.ntotal for p in parts))
    return GallerySearcher(parts, nprobe)


def manifest_version(manifest_rows: Sequence[Mapping[str, Any]]) -> str:
    """A key naming the gallery version: sha256 over each row's partition, digests and nprobe."""
    for row in manifest_rows:
        _check_manifest_row(row)
    content = sorted(
        (str(r["partition"]), str(r["index_sha256"]), str(r["ids_sha256"]), int(r["nprobe"])) for r in manifest_rows
    )
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


_CACHE: OrderedDict[str, GallerySearcher] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def cached_searcher(
    manifest_rows: Sequence[Mapping[str, Any]], threads: int | None = None, version: str | None = None,
    lake: LakeFs | None = None, cache_dir: str | None = None,
) -> GallerySearcher:
    """The searcher for a gallery version, loaded at most once per Python process.

    Spark reuses Python workers, so a UDF calling this per batch loads each version once per worker.

    Args:
        manifest_rows: as for ``load_searcher``.
        threads: OpenMP threads, applied on every call (another task in the worker may have changed it).
        version: cache key made on the driver; defaults to ``manifest_version(manifest_rows)``.
        lake, cache_dir: as for ``load_searcher``.
    """
    key = version if version is not None else manifest_version(manifest_rows)
    with _CACHE_LOCK:
        searcher = _CACHE.get(key)
        if searcher is None:
            searcher = load_searcher(manifest_rows, threads, lake, cache_dir)
            _CACHE[key] = searcher
            while len(_CACHE) > CACHE_MAX_ENTRIES:
                evicted, _ = _CACHE.popitem(last=False)
                log.info("evicted gallery version %s from the searcher cache", evicted[:12])
        else:
            _CACHE.move_to_end(key)
            set_threads(threads)
    return searcher


def clear_searcher_cache() -> None:
    """Drop every cached searcher (tests, or a worker told to free memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()
