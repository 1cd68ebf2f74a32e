"""Index kind and parameter rules, and nprobe tuning."""

from __future__ import annotations

import numpy as np
import pytest

from facelink.index.build import build_partition_index, exact_search
from facelink.index.params import (
    IndexParams,
    choose_index_params,
    ivf_nlist,
    ivf_search_params,
    knn_recall,
    nprobe_by_score,
    nprobe_for_floor,
    nprobe_for_recall,
    nprobe_ladder,
)
from facelink.index.synthetic import EmbeddingStats, generate_gallery, generate_probes, reference_stats

GIB = 1 << 30


@pytest.fixture(scope="module")
def ref_stats() -> EmbeddingStats:
    return reference_stats()


def test_small_partitions_are_searched_exactly() -> None:
    params = choose_index_params(50_000, 128, GIB)
    assert params.kind == "flat"
    assert params.factory_string == "Flat"


def test_fastscan_with_refine_when_vectors_fit_the_budget() -> None:
    params = choose_index_params(1_000_000, 128, 4 * GIB)
    assert params.kind == "ivf_fastscan"
    assert (params.nlist, params.m, params.nbits) == (1024, 128, 4)
    assert params.factory_string == "IVF1024,PQ128x4fs,RFlat"
    assert params.nprobe_default == 512
    assert choose_index_params(100_000, 128, 4 * GIB).nlist == 256


def test_ivf_flat_when_vectors_fit_and_fast_scan_is_off() -> None:
    params = choose_index_params(1_000_000, 128, 4 * GIB, fast_scan=False)
    assert params.kind == "ivf_flat"
    assert params.nlist == 4096
    assert params.factory_string == "IVF4096,Flat"
    assert 39 * params.nlist <= params.train_size <= 1_000_000
    assert 1 <= params.nprobe_default <= params.nlist


def test_ivf_pq_when_raw_vectors_do_not_fit() -> None:
    raw_bytes = 1_000_000 * (128 * 4 + 8)
    params = choose_index_params(1_000_000, 128, raw_bytes // 2)
    assert params.kind == "ivf_pq"
    assert (params.m, params.nbits) == (64, 8)
    tighter = choose_index_params(1_000_000, 128, 1_000_000 * 60)
    assert (tighter.kind, tighter.m) == ("ivf_pq", 32)


def test_no_index_fits_a_tiny_budget() -> None:
    with pytest.raises(ValueError, match="fits"):
        choose_index_params(1_000_000, 128, 1_000_000)


def test_nlist_is_a_power_of_two_near_four_root_n() -> None:
    assert ivf_nlist(100_000) == 1024
    assert ivf_nlist(300_000) == 2048
    assert ivf_nlist(1_000_000) == 4096
    assert ivf_nlist(1_000_000, per_root=1.0) == 1024
    assert ivf_nlist(100) * 39 <= 100


def test_bad_params_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        IndexParams(kind="hnsw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train_size"):
        IndexParams(kind="ivf_flat", nlist=64, train_size=10)
    with pytest.raises(ValueError, match="nbits=4"):
        IndexParams(kind="ivf_fastscan", nlist=64, m=128, nbits=8, train_size=100)


def test_ladder_steps_by_half_doublings_up_to_nlist() -> None:
    assert nprobe_ladder(100) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 100]
    assert nprobe_ladder(1) == [1]


def test_knn_recall_ignores_missing_exact_results() -> None:
    found = np.array([[1, 2, 3], [4, 5, -1]])
    exact = np.array([[1, 2, 9], [4, -1, -1]])
    assert knn_recall(found, exact) == pytest.approx(3 / 4)


def test_nprobe_for_recall_is_the_smallest_reaching_the_target(ref_stats: EmbeddingStats) -> None:
    xb, _ = generate_gallery(ref_stats, 5000, 2, seed=11)
    xq, _, _ = generate_probes(ref_stats, 5000, 100, 100, seed=11, probe_seed=1)
    params = IndexParams(kind="ivf_flat", nlist=64, train_size=5000, nprobe_default=4)
    index = build_partition_index(xb, params, seed=0)
    _, exact_ids = exact_search(xb, xq, 10)
    nprobe = nprobe_for_recall(index, xq, exact_ids, 0.95, 10)
    recall = knn_recall(index.search(xq, 10, params=ivf_search_params(nprobe))[1], exact_ids)
    assert recall >= 0.95
    ladder = nprobe_ladder(64)
    if nprobe > 1:
        below = ladder[ladder.index(nprobe) - 1]
        assert knn_recall(index.search(xq, 10, params=ivf_search_params(below))[1], exact_ids) < 0.95


def test_nprobe_by_score_reaches_the_target_above_each_level(ref_stats: EmbeddingStats) -> None:
    xb, _ = generate_gallery(ref_stats, 5000, (0.5, 0.5), seed=12)
    params = IndexParams(kind="ivf_flat", nlist=64, train_size=5000, nprobe_default=4)
    index = build_partition_index(xb, params, seed=0)
    sample = np.random.default_rng(0).choice(xb.shape[0], 300, replace=False)
    xq = xb[sample]
    exact_scores, exact_ids = exact_search(xb, xq, 10)
    by_score = nprobe_by_score(index, xq, exact_ids, exact_scores, 0.95, 10, self_ids=sample, min_pairs=20)
    assert by_score, "no level had enough neighbours"
    knn = nprobe_for_recall(index, xq, exact_ids, 0.95, 10)
    for key, nprobe in by_score.items():
        found = index.search(xq, 10, params=ivf_search_params(nprobe))[1]
        wanted = (exact_scores >= float(key)) & (exact_ids != sample[:, None])
        hit = (exact_ids[:, :, None] == found[:, None, :]).any(axis=2)
        assert hit[wanted].mean() >= 0.95
        # Strong neighbours (mates) are found with fewer lists than the whole top-10 needs.
        assert nprobe <= knn
    # Higher levels never need more lists than lower ones on this data.
    values = [by_score[k] for k in sorted(by_score)]
    assert values[-1] <= values[0]


def test_nprobe_for_floor_takes_the_highest_level_at_or_below_the_floor() -> None:
    by_score = {"0.30": 64, "0.40": 16, "0.50": 8}
    assert nprobe_for_floor(128, by_score, 0.45) == 16
    assert nprobe_for_floor(128, by_score, 0.50) == 8
    assert nprobe_for_floor(128, by_score, 0.99) == 8
    # Below every measured level, or nothing measured: the top-10 nprobe.
    assert nprobe_for_floor(128, by_score, 0.25) == 128
    assert nprobe_for_floor(128, None, 0.45) == 128
    # Never wider than the top-10 nprobe.
    assert nprobe_for_floor(32, by_score, 0.35) == 32
