"""Global top-k across partitions, manifest loading with digests, and the per-worker cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facelink.index import search as search_module
from facelink.index.build import (
    IndexIntegrityError,
    build_partition_index,
    exact_search,
    file_sha256,
    write_index,
)
from facelink.index.params import IndexParams
from facelink.index.search import (
    GallerySearcher,
    PartitionIndex,
    cached_searcher,
    clear_searcher_cache,
    load_searcher,
    manifest_version,
    merge_topk,
)
from facelink.lake.fs import LakeFs
from tests.s3_server import S3Server

DIM = 32


def unit_vectors(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def union() -> tuple[np.ndarray, np.ndarray]:
    """3000 vectors and their global face ids (shuffled, not positions)."""
    ids = np.random.default_rng(1).permutation(np.arange(10_000, 13_000)).astype(np.int64)
    return unit_vectors(3000, seed=0), ids


@pytest.fixture(scope="module")
def partitions(union: tuple[np.ndarray, np.ndarray]) -> list[PartitionIndex]:
    xb, ids = union
    flat = IndexParams(kind="flat")
    bounds = [("north", 0, 700), ("south", 700, 2000), ("west", 2000, 3000)]
    return [PartitionIndex(name, build_partition_index(xb[a:b], flat), ids[a:b]) for name, a, b in bounds]


def test_global_top_k_equals_exact_search_over_the_union(
    partitions: list[PartitionIndex], union: tuple[np.ndarray, np.ndarray]
) -> None:
    xb, ids = union
    xq = unit_vectors(50, seed=9)
    scores, found, part_idx = GallerySearcher(partitions, nprobe=1).search(xq, k=10)
    exact_scores, exact_pos = exact_search(xb, xq, 10)
    np.testing.assert_array_equal(found, ids[exact_pos])
    np.testing.assert_allclose(scores, exact_scores, rtol=0, atol=1e-5)
    assert found.dtype == np.int64 and scores.dtype == np.float32
    owner = np.searchsorted([700, 2000], exact_pos, side="right")
    np.testing.assert_array_equal(part_idx, owner)


def test_selected_partitions_only(partitions: list[PartitionIndex], union: tuple[np.ndarray, np.ndarray]) -> None:
    xb, ids = union
    xq = unit_vectors(5, seed=3)
    _, found, part_idx = GallerySearcher(partitions, nprobe=1).search(xq, k=4, partitions=["west"])
    assert set(part_idx.ravel()) == {2}
    _, exact_pos = exact_search(xb[2000:], xq, 4)
    np.testing.assert_array_equal(found, ids[2000:][exact_pos])
    with pytest.raises(ValueError, match="unknown partitions"):
        GallerySearcher(partitions, nprobe=1).search(xq, k=4, partitions=["east"])


def test_fewer_than_k_results_are_padded(union: tuple[np.ndarray, np.ndarray]) -> None:
    xb, ids = union
    tiny = PartitionIndex("tiny", build_partition_index(xb[:3], IndexParams(kind="flat")), ids[:3])
    scores, found, part_idx = GallerySearcher([tiny], nprobe=1).search(xb[:2], k=5)
    assert (found[:, 3:] == -1).all() and (part_idx[:, 3:] == -1).all()
    assert np.isneginf(scores[:, 3:]).all()
    assert found[0, 0] == ids[0] and found[1, 0] == ids[1]


def test_ties_break_by_smaller_id_then_partition() -> None:
    scores = np.array([[0.5, 0.9, 0.5, -np.inf, 0.5]], dtype=np.float32)
    ids = np.array([[7, 3, 7, -1, 2]], dtype=np.int64)
    parts = np.array([[1, 0, 0, -1, 2]], dtype=np.int32)
    top_scores, top_ids, top_parts = merge_topk(scores, ids, parts, k=5)
    np.testing.assert_array_equal(top_ids, [[3, 2, 7, 7, -1]])
    np.testing.assert_array_equal(top_parts, [[0, 2, 0, 1, -1]])
    assert np.isneginf(top_scores[0, -1])


def test_ivf_partitions_take_their_own_nprobe(union: tuple[np.ndarray, np.ndarray]) -> None:
    xb, ids = union
    params = IndexParams(kind="ivf_flat", nlist=16, train_size=3000, nprobe_default=1)
    part = PartitionIndex("all", build_partition_index(xb, params), ids)
    with pytest.raises(ValueError, match="no nprobe"):
        GallerySearcher([part], nprobe={"other": 4})
    _, found, _ = GallerySearcher([part], nprobe={"all": 16}).search(xb[:20], k=1)
    np.testing.assert_array_equal(found[:, 0], ids[:20])


def test_ids_must_match_the_index(union: tuple[np.ndarray, np.ndarray]) -> None:
    xb, ids = union
    index = build_partition_index(xb[:10], IndexParams(kind="flat"))
    with pytest.raises(ValueError, match="ids for"):
        PartitionIndex("p", index, ids[:9])
    with pytest.raises(TypeError, match="int64"):
        PartitionIndex("p", index, ids[:10].astype(np.int32))


def write_manifest(partitions: list[PartitionIndex], folder: Path) -> list[dict[str, Any]]:
    rows = []
    for part in partitions:
        index_path = folder / f"{part.partition}.faiss"
        ids_path = folder / f"{part.partition}.ids.npy"
        np.save(ids_path, part.ids)
        rows.append(
            {
                "partition": part.partition,
                "index_path": str(index_path),
                "ids_path": str(ids_path),
                "index_sha256": write_index(part.index, index_path),
                "ids_sha256": file_sha256(ids_path),
                "nprobe": 1,
            }
        )
    return rows


def test_load_searcher_verifies_digests(partitions: list[PartitionIndex], tmp_path: Path) -> None:
    rows = write_manifest(partitions, tmp_path)
    xq = unit_vectors(8, seed=4)
    loaded = load_searcher(rows, threads=1)
    assert loaded.partition_names == ["north", "south", "west"]
    np.testing.assert_array_equal(loaded.search(xq, 6)[1], GallerySearcher(partitions, nprobe=1).search(xq, 6)[1])
    bad_ids = [dict(row) for row in rows]
    bad_ids[1]["ids_sha256"] = "f" * 64
    with pytest.raises(IndexIntegrityError, match=r"south\.ids\.npy"):
        load_searcher(bad_ids)
    with pytest.raises(ValueError, match="lacks"):
        load_searcher([{k: v for k, v in rows[0].items() if k != "nprobe"}])


def test_cached_searcher_loads_each_version_once(
    partitions: list[PartitionIndex], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = write_manifest(partitions, tmp_path)
    loads: list[int] = []
    real_load = search_module.load_searcher

    def counting_load(manifest_rows: list[dict[str, Any]], threads: int | None = None, lake: Any = None,
                      cache_dir: str | None = None) -> GallerySearcher:
        loads.append(len(manifest_rows))
        return real_load(manifest_rows, threads, lake, cache_dir)

    monkeypatch.setattr(search_module, "load_searcher", counting_load)
    clear_searcher_cache()
    first = cached_searcher(rows, threads=1)
    assert cached_searcher(rows, threads=1) is first
    assert loads == [3]
    other = cached_searcher(rows[:2], threads=1)
    assert other is not first and loads == [3, 2]
    assert manifest_version(rows) != manifest_version(rows[:2])
    clear_searcher_cache()


@pytest.mark.objectstore
def test_searchers_load_the_index_from_the_object_store_once_per_machine(
    partitions: list[PartitionIndex], tmp_path: Path, s3_server: S3Server
) -> None:
    """Executors read the lake's files, not the driver's: copied once into a cache keyed by the digest."""
    (tmp_path / "built").mkdir()
    rows = write_manifest(partitions, tmp_path / "built")
    lake = LakeFs(s3_server.s3_conf)
    remote = []
    for row in rows:
        moved = dict(row)
        for key in ("index_path", "ids_path"):
            uri = s3_server.uri("search-test", "indexes", "v1", Path(row[key]).name)
            lake.upload(row[key], uri)
            moved[key] = uri
        remote.append(moved)
    cache = tmp_path / "cache"
    xq = unit_vectors(8, seed=5)
    loaded = load_searcher(remote, threads=1, lake=lake, cache_dir=str(cache))
    np.testing.assert_array_equal(loaded.search(xq, 6)[1], GallerySearcher(partitions, nprobe=1).search(xq, 6)[1])
    cached = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())
    assert cached == sorted(f"{r[d]}/{Path(r[p]).name}" for r in rows
                            for d, p in (("index_sha256", "index_path"), ("ids_sha256", "ids_path")))
    lake.delete(s3_server.uri("search-test"))  # a second load needs only the cache
    again = load_searcher(remote, threads=1, lake=lake, cache_dir=str(cache))
    np.testing.assert_array_equal(again.search(xq, 6)[0], loaded.search(xq, 6)[0])
