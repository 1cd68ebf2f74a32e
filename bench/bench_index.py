"""Benchmark of partition index building and search on synthetic face galleries.

For each gallery size: generate a gallery (``facelink.index.synthetic``), choose the index with
``choose_index_params``, train on a sample, fill shards from the serialised trained index and merge
them (as the Spark job does), then measure build time, peak memory and exact search's query rate,
and at three operating points (the nprobe reaching ``TARGET_RECALL`` of the exact top-k; of the probe's
own photos in the exact top-k; and of the exact top-k neighbours scoring at least ``FLOOR_SCORE``, the
kind of floor below which the matching jobs store nothing) recall@k and the index's query rate. Results go to
``bench/results/index.json``.

Usage: ``python bench/bench_index.py [--sizes 100000 1000000] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import psutil

from facelink.index.build import (
    add_shard,
    attach_refine,
    merge_shards,
    serialize,
    set_threads,
    train_index,
)
from facelink.index.params import (
    choose_index_params,
    knn_recall,
    nprobe_by_score,
    nprobe_for_recall,
    nprobe_ladder,
    search_params,
)
from facelink.index.synthetic import EmbeddingStats, generate_gallery, generate_probes, reference_stats

log = logging.getLogger("bench_index")

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "index.json"
# Gallery photo counts for duplicate-enrolment search: most people enrolled once, some two or three times.
PHOTO_PMF = (0.6, 0.25, 0.15)
MEMORY_BUDGET_BYTES = 4 << 30
TARGET_RECALL = 0.98
# Score level of the third operating point: matching and dedup store only candidates above a calibrated
# floor (0.498 for the 1M synthetic gallery in bench/results/match.json) and search with the nprobe of the
# highest measured level at or below it, 0.45 there.
FLOOR_SCORE = 0.45
SHARDS = 4
SEED = 0


class PeakRss:
    """Samples this process's resident memory in a background thread and keeps the maximum."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._process = psutil.Process()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(self.interval_s)

    @contextmanager
    def watch(self) -> Iterator[PeakRss]:
        """Track the peak while the block runs."""
        self.peak = self._process.memory_info().rss
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self._stop.clear()


def build_sharded(xb: np.ndarray, n: int, threads: int) -> tuple[faiss.Index, dict[str, Any]]:
    """Train, fill ``SHARDS`` shards from the serialised trained index, merge (and attach re-ranking)."""
    params = choose_index_params(n, xb.shape[1], MEMORY_BUDGET_BYTES)
    rng = np.random.default_rng(SEED)
    t0 = time.perf_counter()
    sample = xb[np.sort(rng.choice(n, size=params.train_size, replace=False))] if params.train_size else xb[:0]
    trained = serialize(train_index(sample, params, seed=SEED, threads=threads))
    t1 = time.perf_counter()
    bounds = np.linspace(0, n, SHARDS + 1).astype(int)
    shards = [add_shard(trained, xb[a:b], int(a)) for a, b in itertools.pairwise(bounds)]
    index = merge_shards(shards)
    if params.kind == "ivf_fastscan":
        index = attach_refine(index, xb, params.refine_k_factor)
    t2 = time.perf_counter()
    info = {
        "index": params.factory_string,
        "nlist": params.nlist,
        "train_size": params.train_size,
        "train_s": round(t1 - t0, 2),
        "add_merge_s": round(t2 - t1, 2),
        "build_s": round(t2 - t0, 2),
    }
    return index, info


def queries_per_second(search: Any, xq: np.ndarray, repeats: int = 2) -> tuple[float, Any]:
    """Best rate over ``repeats`` batch searches, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = search(xq)
        best = min(best, time.perf_counter() - start)
    return xq.shape[0] / best, result


@dataclass(frozen=True)
class Probes:
    """Probe vectors ``xq`` [Q, d], identity ``labels`` [Q] and ``mated`` flags [Q]."""

    xq: np.ndarray
    labels: np.ndarray
    mated: np.ndarray


def mate_recall(found: np.ndarray, exact_ids: np.ndarray, gallery_labels: np.ndarray, probes: Probes) -> float:
    """Share of the probe's own photos in the exact top-k that the approximate top-k also holds.

    This is what duplicate-enrolment search needs: the same person among the candidates, whatever
    strangers fill the other places.
    """
    hits = total = 0
    for row in np.flatnonzero(probes.mated):
        exact_row = exact_ids[row][exact_ids[row] >= 0]
        mates = exact_row[gallery_labels[exact_row] == probes.labels[row]]
        hits += int(np.isin(mates, found[row]).sum())
        total += mates.size
    return hits / total if total else 1.0


def nprobe_for_mate_recall(
    index: faiss.Index, probes: Probes, exact_ids: np.ndarray, gallery_labels: np.ndarray, k: int
) -> int:
    """Smallest nprobe on the ladder whose mate recall reaches ``TARGET_RECALL``."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return 1
    for nprobe in nprobe_ladder(ivf.nlist):
        _, found = index.search(probes.xq, k, params=search_params(index, nprobe))
        if mate_recall(found, exact_ids, gallery_labels, probes) >= TARGET_RECALL:
            return nprobe
    return int(ivf.nlist)


def bench_size(size: int, stats: EmbeddingStats, n_queries: int, k: int, threads: int) -> dict[str, Any]:
    """One row of results for a gallery of ``size`` vectors."""
    n_identities = int(size / np.dot(np.arange(1, len(PHOTO_PMF) + 1), PHOTO_PMF) * 1.02)
    start = time.perf_counter()
    xb, gallery_labels = generate_gallery(stats, n_identities, PHOTO_PMF, seed=SEED)
    xb, gallery_labels = np.ascontiguousarray(xb[:size]), gallery_labels[:size]
    generate_s = time.perf_counter() - start
    # Half mated (new photos of gallery people), half non-mated; separate tuning and evaluation sets.
    half = n_queries // 2
    tune, test = (Probes(*generate_probes(stats, n_identities, half, half, SEED, seed)) for seed in (1, 2))
    with PeakRss().watch() as rss:
        index, info = build_sharded(xb, size, threads)
    exact = faiss.IndexFlatIP(xb.shape[1])
    exact.add(xb)
    tune_scores, tune_exact = exact.search(tune.xq, k)
    exact_qps, (test_scores, test_exact) = queries_per_second(lambda q: exact.search(q, k), test.xq)
    row: dict[str, Any] = {"size": size, **info, "generate_s": round(generate_s, 2)}
    row["peak_rss_build_gib"] = round(rss.peak / 2**30, 2)
    # Two operating points: recall of the exact top-k (strangers included), and of the probe's mates.
    # A third: recall of the exact top-k neighbours scoring at least FLOOR_SCORE (what the jobs store).
    floor_key = f"{FLOOR_SCORE:.2f}"
    by_score = nprobe_by_score(index, tune.xq, tune_exact, tune_scores, TARGET_RECALL, k, levels=(FLOOR_SCORE,))
    ivf = faiss.try_extract_index_ivf(index)
    targets = {
        "knn": nprobe_for_recall(index, tune.xq, tune_exact, TARGET_RECALL, k),
        "mate": nprobe_for_mate_recall(index, tune, tune_exact, gallery_labels, k),
        "floor": by_score.get(floor_key, int(ivf.nlist) if ivf is not None else 1),
    }
    for name, nprobe in targets.items():
        params = search_params(index, nprobe)
        ann_qps, (_, found) = queries_per_second(lambda q, p=params: index.search(q, k, params=p), test.xq)
        row[f"{name}_nprobe"] = nprobe
        row[f"{name}_recall@{k}"] = round(knn_recall(found, test_exact), 4)
        row[f"{name}_mate_recall@{k}"] = round(mate_recall(found, test_exact, gallery_labels, test), 4)
        above = test_scores >= FLOOR_SCORE
        hit = (test_exact[:, :, None] == found[:, None, :]).any(axis=2)
        row[f"{name}_recall_above_{floor_key}"] = round(float(hit[above].mean()) if above.any() else 1.0, 4)
        row[f"{name}_qps"] = round(ann_qps)
    # Exact search again after the index's runs: the faster of the two counts, so that load from other
    # processes on shared cores cannot inflate the speed-ups.
    exact_qps = max(exact_qps, queries_per_second(lambda q: exact.search(q, k), test.xq)[0])
    row["exact_qps"] = round(exact_qps)
    for name in targets:
        row[f"{name}_speedup"] = round(row[f"{name}_qps"] / exact_qps, 1)
    row.update(n_queries=int(test.xq.shape[0]), threads=threads, load_avg_1m=round(os.getloadavg()[0], 2))
    log.info("%s", row)
    return row


def run_index_bench(
    sizes: Sequence[int] = (100_000, 300_000, 1_000_000),
    n_queries: int = 1000,
    k: int = 10,
    threads: int = 2,
    stats: EmbeddingStats | None = None,
    results_path: Path = RESULTS_PATH,
) -> list[dict[str, Any]]:
    """Benchmark each gallery size and write the rows (with machine details) to ``results_path``.

    Args:
        sizes: gallery sizes in vectors.
        n_queries: evaluation queries (as many again tune nprobe).
        k: neighbours per query.
        threads: FAISS OpenMP threads.
        stats: embedding statistics to generate from; when ``None``, ``reference_stats()`` as wide as the
            configured recogniser's embedding (``models.recogniser`` of the local configuration).
        results_path: JSON output.
    """
    set_threads(threads)
    stats = stats if stats is not None else reference_stats(dim=configured_dim())
    rows = [bench_size(size, stats, n_queries, k, threads) for size in sizes]
    results_path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {"cpus": psutil.cpu_count(), "platform": platform.platform(), "faiss": faiss.__version__},
        "dim": stats.dim,
        "target_recall": TARGET_RECALL,
        "floor_score": FLOOR_SCORE,
        "results": rows,
    }
    results_path.write_text(json.dumps(report, indent=2) + "\n")
    return rows


def configured_dim() -> int:
    """Width of the embeddings the configured recogniser stores (the local configuration's default)."""
    from facelink.config import load_config
    from facelink.registry import recogniser

    return recogniser(load_config("local")).dim


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the rows as a table with one line per measure and one column per gallery size."""
    names = list(rows[0])
    name_width = max(len(name) for name in names)
    widths = [max(len(str(row[name])) for name in names) for row in rows]
    for name in names:
        cells = (str(row[name]).rjust(width) for row, width in zip(rows, widths, strict=True))
        print(name.ljust(name_width), *cells, sep="  ")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stats", type=Path, help="EmbeddingStats .npz (default: reference_stats())")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stats = EmbeddingStats.load(args.stats) if args.stats else None
    rows = run_index_bench(args.sizes, args.queries, args.k, args.threads, stats, args.out)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
