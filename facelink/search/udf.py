"""Spark side of gallery search: a ``mapInPandas`` factory shared by the matching and dedup jobs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from facelink.lake.fs import LakeFs

HITS_SCHEMA = T.StructType([
    T.StructField("qid", T.LongType(), False),
    T.StructField("rank", T.IntegerType(), False),
    T.StructField("score", T.FloatType(), False),
    T.StructField("face_id", T.LongType(), False),
])


def make_search_fn(manifest_rows: Sequence[Mapping[str, Any]], version: str, k: int, threads: int,
                   partitions: Sequence[str] | None = None, lake: LakeFs | None = None,
                   ) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``(qid, embedding)`` batches in, ``(qid, rank, score, face_id)`` hits out (rank 1 = best).

    The index version is loaded once per Python worker (``cached_searcher`` keyed by ``version`` and the
    partitions' nprobe) from the lake: remote files are copied once per machine into its local cache,
    keyed by their manifest digests. Only plain values (manifest rows, k, threads, the lake's object-store
    settings inside ``lake``) travel from the driver.
    """
    from facelink.index.search import manifest_version

    rows = [dict(r) for r in manifest_rows]
    wanted = list(partitions) if partitions else None
    # The key names the version and the nprobe of each partition: two jobs in one session may search one
    # version with different breadths.
    key = f"{version}/{manifest_version(rows)[:16]}"

    def search(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from facelink.index.search import cached_searcher

        searcher = cached_searcher(rows, threads, key, lake)
        for batch in batches:
            if batch.empty:
                continue
            xq = np.stack(list(batch["embedding"])).astype(np.float32)
            scores, ids, _ = searcher.search(xq, k, wanted)
            qids = np.repeat(batch["qid"].to_numpy(np.int64), k)
            ranks = np.tile(np.arange(1, k + 1, dtype=np.int32), len(batch))
            keep = ids.reshape(-1) >= 0
            yield pd.DataFrame({"qid": qids[keep], "rank": ranks[keep], "score": scores.reshape(-1)[keep],
                                "face_id": ids.reshape(-1)[keep]})

    return search


def search_gallery(queries: DataFrame, manifest_rows: Sequence[Mapping[str, Any]], version: str, k: int,
                   threads: int, partitions: Sequence[str] | None = None, lake: LakeFs | None = None) -> DataFrame:
    """Top-``k`` gallery hits of every ``(qid, embedding)`` row of ``queries``."""
    fn = make_search_fn(manifest_rows, version, k, threads, partitions, lake)
    return queries.select("qid", "embedding").mapInPandas(fn, schema=HITS_SCHEMA)
