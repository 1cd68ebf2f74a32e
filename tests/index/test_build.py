"""Training, shard filling, merging, storing and incremental adds of partition indexes."""

from __future__ import annotations

import itertools
from pathlib import Path

import faiss
import numpy as np
import pytest

from facelink.index.build import (
    IndexIntegrityError,
    add_incremental,
    add_shard,
    attach_refine,
    build_partition_index,
    merge_shards,
    read_index,
    recall_at_k,
    serialize,
    train_index,
    write_index,
)
from facelink.index.params import IndexParams, ivf_search_params, search_params
from facelink.index.synthetic import EmbeddingStats, generate_gallery, generate_probes, reference_stats

IVF_PARAMS = IndexParams(kind="ivf_flat", nlist=64, train_size=10_000, nprobe_default=8)
FASTSCAN_PARAMS = IndexParams(kind="ivf_fastscan", nlist=128, m=128, nbits=4, train_size=10_000, nprobe_default=64)


@pytest.fixture(scope="module")
def ref_stats() -> EmbeddingStats:
    return reference_stats()


@pytest.fixture(scope="module")
def gallery(ref_stats: EmbeddingStats) -> np.ndarray:
    """20k clustered unit vectors: about 8k identities with 1 to 4 photos each."""
    xb, _ = generate_gallery(ref_stats, 8200, [0.2, 0.3, 0.3, 0.2], seed=5)
    return xb[:20_000]


@pytest.fixture(scope="module")
def queries(ref_stats: EmbeddingStats) -> np.ndarray:
    xq, _, _ = generate_probes(ref_stats, 8000, 150, 50, seed=5, probe_seed=2)
    return xq


@pytest.fixture(scope="module")
def ivf_index(gallery: np.ndarray) -> faiss.Index:
    return build_partition_index(gallery, IVF_PARAMS, seed=0, threads=1)


def test_exact_index_finds_each_vector_first(gallery: np.ndarray) -> None:
    xb = gallery[:3000]
    index = build_partition_index(xb, IndexParams(kind="flat"))
    scores, ids = index.search(xb, 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(xb.shape[0]))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_ivf_recall_at_10_on_clustered_set(ivf_index: faiss.Index, gallery: np.ndarray, queries: np.ndarray) -> None:
    assert gallery.shape == (20_000, 128)
    # Face-like embeddings spread over ~80 dimensions: IVF must visit a large share of its lists.
    assert recall_at_k(ivf_index, gallery, queries, k=10, nprobe=48) >= 0.95
    # One list alone must be worse, or the test is not exercising the approximation.
    assert recall_at_k(ivf_index, gallery, queries, k=10, nprobe=1) < 0.95


def test_shards_filled_from_bytes_and_merged_equal_a_single_build(
    ivf_index: faiss.Index, gallery: np.ndarray, queries: np.ndarray
) -> None:
    rng = np.random.default_rng(0)
    sample = gallery[np.sort(rng.choice(gallery.shape[0], size=IVF_PARAMS.train_size, replace=False))]
    trained = serialize(train_index(sample, IVF_PARAMS, seed=0))
    bounds = [0, 7000, 13_000, 20_000]
    shards = [add_shard(trained, gallery[a:b], start_id=a) for a, b in itertools.pairwise(bounds)]
    merged = merge_shards(shards)
    assert merged.ntotal == gallery.shape[0]
    params = ivf_search_params(8)
    merged_scores, merged_ids = merged.search(queries, 10, params=params)
    single_scores, single_ids = ivf_index.search(queries, 10, params=params)
    np.testing.assert_array_equal(merged_ids, single_ids)
    np.testing.assert_array_equal(merged_scores, single_scores)


def test_fastscan_shards_with_refine_equal_a_single_build(gallery: np.ndarray, queries: np.ndarray) -> None:
    single = build_partition_index(gallery, FASTSCAN_PARAMS, seed=0)
    assert isinstance(single, faiss.IndexRefine)
    assert recall_at_k(single, gallery, queries, k=10, nprobe=96) >= 0.95
    rng = np.random.default_rng(0)
    sample = gallery[np.sort(rng.choice(gallery.shape[0], size=FASTSCAN_PARAMS.train_size, replace=False))]
    trained = serialize(train_index(sample, FASTSCAN_PARAMS, seed=0))
    shards = [add_shard(trained, gallery[:9000], 0), add_shard(trained, gallery[9000:], 9000)]
    merged = attach_refine(merge_shards(shards), gallery, FASTSCAN_PARAMS.refine_k_factor)
    params = search_params(merged, 64)
    np.testing.assert_array_equal(
        merged.search(queries, 10, params=params)[1], single.search(queries, 10, params=params)[1]
    )
    with pytest.raises(ValueError, match="before attach_refine"):
        merge_shards([merged, single])


def test_shards_of_different_trainings_are_not_merged(gallery: np.ndarray) -> None:
    params = IndexParams(kind="ivf_flat", nlist=16, train_size=2000, nprobe_default=4)
    one = add_shard(serialize(train_index(gallery[:2000], params, seed=0)), gallery[:100], 0)
    two = add_shard(serialize(train_index(gallery[2000:4000], params, seed=1)), gallery[100:200], 100)
    with pytest.raises(ValueError, match="different trained"):
        merge_shards([one, two])


def test_flat_shards_concatenate(gallery: np.ndarray) -> None:
    params = IndexParams(kind="flat")
    trained = serialize(train_index(gallery[:0], params))
    merged = merge_shards([add_shard(trained, gallery[:500], 0), add_shard(trained, gallery[500:900], 500)])
    _, ids = merged.search(gallery[[0, 499, 500, 899]], 1)
    np.testing.assert_array_equal(ids[:, 0], [0, 499, 500, 899])


def test_written_index_round_trips_and_a_wrong_digest_is_refused(
    ivf_index: faiss.Index, queries: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "part=a" / "index.faiss"
    digest = write_index(ivf_index, path)
    assert len(digest) == 64
    assert [p.name for p in path.parent.iterdir()] == ["index.faiss"]
    loaded = read_index(path, digest)
    params = ivf_search_params(8)
    np.testing.assert_array_equal(
        loaded.search(queries, 5, params=params)[1], ivf_index.search(queries, 5, params=params)[1]
    )
    with pytest.raises(IndexIntegrityError, match="sha256"):
        read_index(path, "0" * 64)
    with path.open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01")
    with pytest.raises(IndexIntegrityError):
        read_index(path, digest)


def test_incremental_add_makes_new_vectors_findable(gallery: np.ndarray, ref_stats: EmbeddingStats) -> None:
    index = build_partition_index(gallery[:10_000], IVF_PARAMS, seed=0)
    new, _ = generate_gallery(ref_stats, 300, 1, seed=99)
    add_incremental(index, new, start_id=10_000)
    assert index.ntotal == 10_300
    _, ids = index.search(new, 1, params=ivf_search_params(8))
    np.testing.assert_array_equal(ids[:, 0], np.arange(10_000, 10_300))
    with pytest.raises(ValueError, match="ntotal"):
        add_incremental(index, new[:1], start_id=5)


def test_incremental_add_to_a_refined_fastscan_index(gallery: np.ndarray, ref_stats: EmbeddingStats) -> None:
    index = build_partition_index(gallery[:10_000], FASTSCAN_PARAMS, seed=0)
    new, _ = generate_gallery(ref_stats, 300, 1, seed=99)
    add_incremental(index, new, start_id=10_000)
    _, ids = index.search(new, 1, params=search_params(index, 64))
    np.testing.assert_array_equal(ids[:, 0], np.arange(10_000, 10_300))


def test_pq_index_builds_and_finds_near_duplicates(gallery: np.ndarray) -> None:
    params = IndexParams(kind="ivf_pq", nlist=32, m=16, nbits=6, train_size=5000, nprobe_default=8)
    index = build_partition_index(gallery[:10_000], params, seed=0)
    _, ids = index.search(gallery[:200], 1, params=ivf_search_params(8))
    assert np.mean(ids[:, 0] == np.arange(200)) >= 0.9


def test_vectors_of_the_wrong_dimension_are_refused(ivf_index: faiss.Index) -> None:
    with pytest.raises(ValueError, match="dimension"):
        add_incremental(ivf_index, np.zeros((2, 64), dtype=np.float32), start_id=ivf_index.ntotal)
