"""Build and publish the gallery's FAISS indexes, one per archive partition, from ``faces``.

Searchable faces are the primary gallery faces of the configured recogniser (without those failing the quality
rule when ``index.gallery_quality`` is ``exclude``; a change of that setting rebuilds in full). Per partition
the index kind follows its size and the memory budget (``facelink.index.params.choose_index_params``):
exact search for small partitions, IVF for large ones, trained on a seeded sample; a partition larger than
``index.shard_size`` is filled in shards in parallel on Spark from the serialised trained index and merged on
the driver. recall@10 against exact search is measured on held-back queries and ``nprobe`` is set to reach
``index.recall_target``.

Files go to a new versioned prefix under the lake (``facelink.lake.fs.staged_version``, through the lake's
filesystem seam: a local folder or an object store alike); the version is published by appending all its
``index_manifest`` rows in one Delta commit, so readers see a whole version or none, and a build that
fails or is killed midway leaves the previous version in force (a killed build leaves an unpublished prefix,
which no reader follows and ``jobs.erase`` purges). No rename is needed, so object stores work the same.

Incremental mode adds new faces to a partition's trained index without retraining; a partition is rebuilt
when it grew by more than ``index.rebuild_growth`` since training, when one of its faces left the gallery
(erasure), when it crossed the exact-search size, or when recall dropped by ``index.rebuild_recall_drop``.

``jobs.build_index`` runs :func:`build_and_publish`; ``jobs.erase`` runs it after deleting faces.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import faiss
import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from facelink import identifiers
from facelink.config import Config
from facelink.index import build as ib
from facelink.index.gallery import (
    UNRECORDED_GALLERY_QUALITY,
    current_index,
    manifest_gallery_quality,
    searchable_faces,
)
from facelink.index.params import IndexParams, choose_index_params, nprobe_by_score, nprobe_for_recall
from facelink.index.search import load_ids
from facelink.lake.fs import LakeFs, join, lake_fs, lake_uri, local_staging, staged_version, worker_cache_dir
from facelink.lake.runs import RunRecorder, new_run_id
from facelink.lake.tables import append, read_table
from facelink.registry import recogniser_id
from schemas import get_spec

log = logging.getLogger(__name__)
#: The job name index builds are recorded under.
JOB = "build_index"
K = 10


@dataclass(frozen=True)
class PartitionBuild:
    """One partition's result, as it goes into ``index_manifest``."""

    partition: str
    kind: str
    params: dict[str, Any]
    vector_count: int
    index_path: str
    index_sha256: str
    ids_path: str
    ids_sha256: str
    nprobe: int
    recall_at_10: float
    mode: str


def collect_vectors(gallery: DataFrame, partition: str) -> tuple[np.ndarray, np.ndarray]:
    """Face ids int64 ``[n]`` and embeddings float32 ``[n, d]`` of one partition, ordered by face id."""
    table = gallery.filter(F.col("partition") == partition).select("face_id", "embedding").orderBy("face_id").toArrow()
    ids = table.column("face_id").to_numpy().astype(np.int64)
    if len(ids) == 0:
        return ids, np.zeros((0, 0), np.float32)
    flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return ids, np.ascontiguousarray(flat.reshape(len(ids), -1), dtype=np.float32)


def fill_shards_on_spark(gallery: DataFrame, partition: str, trained: bytes, shard_size: int,
                         threads: int) -> list[faiss.Index]:
    """Fill copies of a trained IVF index with the partition's shards in parallel Spark tasks."""
    rows = gallery.filter(F.col("partition") == partition).select("face_id", "embedding")
    # Positions come from a global order of the ids alone (one task sorts 8-byte ids, not the embeddings),
    # then join back to the vectors.
    positions = rows.select("face_id").withColumn("position", F.row_number().over(Window.orderBy("face_id")) - 1)
    positioned = rows.join(positions, "face_id", how="inner").withColumn(
        "shard", (F.col("position") / F.lit(shard_size)).cast("int")
    )

    def fill(pdf: pd.DataFrame) -> pd.DataFrame:
        from facelink.index import build as build_lib

        pdf = pdf.sort_values("position")
        xb = np.stack(list(pdf["embedding"])).astype(np.float32)
        shard = build_lib.add_shard(trained, xb, int(pdf["position"].iloc[0]), threads)
        return pd.DataFrame({"shard": [int(pdf["shard"].iloc[0])], "data": [build_lib.serialize(shard)]})

    out = positioned.groupBy("shard").applyInPandas(fill, schema="shard int, data binary").orderBy("shard")
    return [ib.deserialize(bytes(r["data"])) for r in out.collect()]


def build_partition(gallery: DataFrame, partition: str, cfg: Config, out_dir: str, seed: int) -> PartitionBuild:
    """Build, measure and write one partition's index (full build)."""
    ids, xb = collect_vectors(gallery, partition)
    n, dim = xb.shape
    params = choose_index_params(n, dim, cfg.index.memory_budget_mb * 2**20, cfg.index.flat_max)
    threads = cfg.index.threads
    if params.kind != "flat" and n > cfg.index.shard_size:
        rng = np.random.default_rng(seed)
        sample = xb[rng.choice(n, size=min(n, params.train_size), replace=False)]
        trained = ib.serialize(ib.train_index(sample, params, seed=seed, threads=threads))
        index = ib.merge_shards(fill_shards_on_spark(gallery, partition, trained, cfg.index.shard_size, 1))
        if params.kind == "ivf_fastscan":
            index = ib.attach_refine(index, xb, params.refine_k_factor)
    else:
        index = ib.build_partition_index(xb, params, seed=seed, threads=threads, shard_size=cfg.index.shard_size)
    nprobe, recall, by_score = measure(index, xb, cfg, seed)
    return write_partition(lake_fs(cfg), out_dir, partition, index, ids, params, nprobe, recall, "full", n,
                           by_score, cfg.index.gallery_quality)


def measure(index: faiss.Index, xb: np.ndarray, cfg: Config, seed: int) -> tuple[int, float, dict[str, int]]:
    """On a seeded sample of the partition's own vectors as queries: the nprobe reaching the recall target
    for the top-10, the recall@10 it gives, and the nprobe reaching it for neighbours above each score
    level (``nprobe_by_score``; a query's own vector is not counted)."""
    n = xb.shape[0]
    rng = np.random.default_rng(seed + 1)
    sample = rng.choice(n, size=min(n, cfg.index.recall_queries), replace=False)
    xq = xb[sample]
    k = min(K, n)
    exact_scores, exact = ib.exact_search(xb, xq, k)
    nprobe = nprobe_for_recall(index, xq, exact, cfg.index.recall_target, k)
    by_score = nprobe_by_score(index, xq, exact, exact_scores, cfg.index.recall_target, k, self_ids=sample)
    return nprobe, ib.recall_at_k(index, xb, xq, k, nprobe), by_score


def write_partition(lake: LakeFs, out_dir: str, partition: str, index: faiss.Index, ids: np.ndarray,
                    params: IndexParams, nprobe: int, recall: float, mode: str, trained_count: int,
                    by_score: dict[str, int], gallery_quality: str) -> PartitionBuild:
    """Write the index and its position -> face id array under ``out_dir`` (a lake URI); return the manifest
    facts (``params`` records ``gallery_quality``, which faces the index holds). FAISS writes a local temporary
    file, which is then put in the lake whole."""
    identifiers.partition(partition)  # a file name under out_dir
    index_path = join(out_dir, f"{partition}.faiss")
    ids_path = join(out_dir, f"{partition}.ids.npy")
    with local_staging("facelink-index-") as staging:
        local_index = staging / f"{partition}.faiss"
        index_sha = ib.write_index(index, local_index)
        lake.upload(local_index, index_path)
    buffer = io.BytesIO()
    np.save(buffer, ids.astype(np.int64), allow_pickle=False)
    ids_bytes = buffer.getvalue()
    lake.write_bytes(ids_path, ids_bytes)
    meta = {**asdict(params), "trained_count": trained_count, "nprobe_by_score": by_score,
            "gallery_quality": gallery_quality}
    return PartitionBuild(partition, params.kind, meta, int(ids.shape[0]), index_path, index_sha,
                          ids_path, hashlib.sha256(ids_bytes).hexdigest(), int(nprobe), float(recall), mode)


def update_partition(gallery: DataFrame, previous: dict[str, Any], cfg: Config, out_dir: str,
                     seed: int) -> PartitionBuild | None:
    """Add new faces to a partition's index without retraining; None when a full rebuild is due."""
    part = str(previous["partition"])
    meta = json.loads(previous["params"])
    trained_count = int(meta.pop("trained_count", previous["vector_count"]))
    previous_by_score = meta.pop("nprobe_by_score", {})
    gallery_quality = meta.pop("gallery_quality", UNRECORDED_GALLERY_QUALITY)
    params = IndexParams(**meta)
    ids, xb = collect_vectors(gallery, part)
    lake = lake_fs(cfg)
    cache = worker_cache_dir()
    old_ids = load_ids(lake.cached_copy(previous["ids_path"], previous["ids_sha256"], cache), previous["ids_sha256"])
    current = set(ids.tolist())
    if any(i not in current for i in old_ids.tolist()):
        log.info("partition %s: faces left the gallery (erasure): rebuild", part)
        return None
    too_big = len(ids) > cfg.index.flat_max if params.kind == "flat" else \
        len(ids) > trained_count * (1 + cfg.index.rebuild_growth)
    if too_big:
        log.info("partition %s grew past its rebuild threshold (%d vectors): rebuild", part, len(ids))
        return None
    old_set = set(old_ids.tolist())
    new_mask = np.array([i not in old_set for i in ids.tolist()], dtype=bool)
    if not new_mask.any():
        meta = {**asdict(params), "trained_count": trained_count, "nprobe_by_score": previous_by_score,
                "gallery_quality": gallery_quality}
        return PartitionBuild(part, params.kind, meta,
                              int(previous["vector_count"]), previous["index_path"], previous["index_sha256"],
                              previous["ids_path"], previous["ids_sha256"], int(previous["nprobe"]),
                              float(previous["recall_at_10"]), "unchanged")
    index = ib.read_index(lake.cached_copy(previous["index_path"], previous["index_sha256"], cache),
                          previous["index_sha256"])
    order = np.concatenate([old_ids, ids[new_mask]])
    vec_by_id = dict(zip(ids.tolist(), range(len(ids)), strict=True))
    xb_ordered = xb[[vec_by_id[i] for i in order.tolist()]] if len(ids) else xb
    if new_mask.any():
        ib.add_incremental(index, xb[new_mask], start_id=len(old_ids), threads=cfg.index.threads)
    nprobe, recall, by_score = measure(index, xb_ordered, cfg, seed)
    before = previous["recall_at_10"]
    if before is not None and recall < float(before) - cfg.index.rebuild_recall_drop:
        log.info("partition %s recall fell %.4f -> %.4f: rebuild", part, previous["recall_at_10"], recall)
        return None
    return write_partition(lake, out_dir, part, index, order, params, nprobe, recall, "incremental",
                           trained_count, by_score, gallery_quality)


def index_root(cfg: Config, model_id: str) -> str:
    """``<lake.root>/indexes/<model>``: one prefix per index version below it."""
    return lake_uri(cfg, "indexes", identifiers.path_part(model_id))


@dataclass(frozen=True)
class BuildResult:
    run_id: str
    index_version: str
    model_id: str
    partitions: int
    vectors: int
    rebuilt: int


def build_and_publish(spark: SparkSession, cfg: Config, full: bool = False, run_id: str | None = None,
                      seed: int = 0) -> BuildResult:
    """Build a new index version (incrementally unless ``full``) and publish it."""
    model_id = recogniser_id(cfg)
    run_id = run_id or new_run_id(JOB)
    with RunRecorder(spark, cfg, JOB, run_id, model_id=model_id) as rec:
        rec.read("faces")
        rec.read("index_manifest")
        gallery = searchable_faces(read_table(spark, cfg, "faces"), model_id, cfg.index.gallery_quality).select(
            "partition", "face_id", "embedding"
        ).cache()
        try:
            counts = {r["partition"]: int(r["count"]) for r in gallery.groupBy("partition").count().collect()}
            if not counts:
                raise ValueError(f"no searchable gallery faces for {model_id}: run ingest and extract first")
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
            version = f"{stamp}-{uuid.uuid4().hex[:8]}"
            base_version, previous = current_index(spark, cfg, model_id)
            built_with = manifest_gallery_quality(previous)
            if built_with is not None and built_with != cfg.index.gallery_quality:
                log.info("index %s holds the gallery faces of gallery_quality=%s, configured %s: full rebuild",
                         base_version, built_with, cfg.index.gallery_quality)
                full = True
            prev_by_part = {} if full else {str(r["partition"]): r for r in previous}
            builds: list[PartitionBuild] = []
            # Written once under its own prefix; in force only once publish() commits its manifest rows.
            with staged_version(lake_fs(cfg), index_root(cfg, model_id), version) as out_dir:
                for part in sorted(counts):
                    build = update_partition(gallery, prev_by_part[part], cfg, out_dir, seed) \
                        if part in prev_by_part else None
                    builds.append(build or build_partition(gallery, part, cfg, out_dir, seed))
                    log.info("partition %s: %s of %d vectors, nprobe %d, recall@10 %.4f (%s)", part,
                             builds[-1].kind, builds[-1].vector_count, builds[-1].nprobe, builds[-1].recall_at_10,
                             builds[-1].mode)
        finally:
            gallery.unpersist()
        if base_version and all(b.mode == "unchanged" for b in builds) and set(prev_by_part) == set(counts):
            log.info("gallery unchanged since index version %s: nothing to publish", base_version)
            version = base_version
        else:
            publish(spark, cfg, builds, version, model_id, base_version if not full else None, run_id)
        rebuilt = sum(b.mode == "full" for b in builds)
        result = BuildResult(run_id, version, model_id, len(builds), sum(b.vector_count for b in builds), rebuilt)
        rec.index_version = version
        rec.counts.update(partitions=result.partitions, vectors=result.vectors, rebuilt=rebuilt)
        rec.detail.update(recall_at_10={b.partition: round(b.recall_at_10, 4) for b in builds})
        rec.wrote("index_manifest")
        return result


def publish(spark: SparkSession, cfg: Config, builds: Sequence[PartitionBuild], version: str, model_id: str,
            base_version: str | None, run_id: str) -> None:
    """Append the version's manifest rows in one Delta commit: the version becomes the one in force."""
    now = dt.datetime.now(dt.UTC)
    spec = get_spec("index_manifest")
    rows = [
        (version, model_id, b.partition, b.kind, json.dumps(b.params, sort_keys=True), b.vector_count, b.index_path,
         b.index_sha256, b.ids_path, b.ids_sha256, b.nprobe, b.recall_at_10, b.mode,
         base_version if b.mode != "full" else None, now, run_id)
        for b in builds
    ]
    append(spark, cfg, spec, spark.createDataFrame(rows, spec.schema))
    log.info("published index version %s (%d partitions)", version, len(builds))
