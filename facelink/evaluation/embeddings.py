"""Embeddings of a labelled set under every extraction variant an evaluation compares, cached in the lake.

A *variant* is (recogniser, flip TTA, detector size). The ``faces`` table holds one row set per model id, and flip TTA
or the detector size do not change the model id, so variants cannot all live in ``faces``. The evaluation therefore
runs its own pass over the set's rows of the ``photos`` table: one Spark ``mapInPandas`` pass per detector size, with
the production extraction UDF (:mod:`facelink.extraction`, ``output="primary"``) holding every recogniser, and a
second time on the mirrored crop those with a flip TTA variant. Detection and alignment are shared, and the flip TTA
embedding is ``l2(l2(plain) + l2(mirrored))``, what :class:`udfs.embed.FaceEmbedder` computes with ``flip_tta`` (up to
float rounding from batching). Each pass writes the primary face of every photo to Parquet under
``<lake>/evaluation/embeddings/<settings hash>/`` and later runs only add photos not there yet, so the whole of
lfw_dev is extracted once per detector size.

The configured pipeline also runs for real (:func:`facelink.extraction.run.extract_faces` into ``faces``), and
:func:`check_against_faces` asserts that its embeddings equal the cached variant with the configured
settings, so the figures of the configured ("default") scoring are those of the production pipeline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.evaluation import EvaluationError
from facelink.evaluation.dataset import LabelledSet
from facelink.extraction.settings import ExtractSettings, build_extraction_pipeline
from facelink.extraction.udf import PRIMARY_SCHEMA, make_extract_fn
from facelink.lake.tables import read_table
from facelink.registry import Recogniser, model_spec, recogniser_id
from udfs.embed import MIRROR, fuse_embeddings

log = logging.getLogger(__name__)

#: Largest difference tolerated between a cached embedding and the ``faces`` table's (flip TTA computed
#: in one ONNX call or two differs by ~1e-6).
FACES_TOLERANCE = 1e-3


@dataclass(frozen=True, order=True)
class Variant:
    """One way of turning a photo into an embedding."""

    recogniser: str
    flip_tta: bool
    detect_size: int

    @property
    def label(self) -> str:
        return f"{self.recogniser}{'+flip' if self.flip_tta else ''}@{self.detect_size}"


def pass_settings(cfg: Config, detect_size: int, recognisers: Sequence[str],
                  mirrored: Sequence[str]) -> ExtractSettings:
    """The extraction of one pass: the configured one at ``detect_size``, every recogniser of the pass without
    flip TTA or fusion, ``mirrored`` ones also on the mirrored crop, one primary-face row per photo."""
    specs = tuple(model_spec(cfg, r) for r in sorted(set(recognisers)))
    members = Recogniser("evaluation-pass", specs, (1.0 / len(specs),) * len(specs))
    return replace(ExtractSettings.from_config(cfg), recogniser=members, detect_size=detect_size, flip_tta=False,
                   output="primary", mirrored=tuple(sorted(set(mirrored))))


def pass_cache_key(settings: ExtractSettings) -> str:
    """Hash of every setting of a pass that changes the output (not threads, batch size or the models folder)."""
    content = {
        "detector": settings.detector.model_id, "recognisers": [r.model_id for r in settings.recogniser.members],
        "mirrored": list(settings.mirrored), "detect_size": settings.detect_size,
        "score_threshold": settings.score_threshold, "nms_iou": settings.nms_iou,
        "align_method": settings.align_method, "max_pixels": settings.max_pixels, "quality": asdict(settings.quality),
        "format": 2,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class EmbeddingStore:
    """Primary-face embeddings of a labelled set's photos, per variant, as NumPy arrays.

    Attributes:
        record_ids: Record id of each photo, aligned with the labelled set's ``paths``.
        vectors: Variant -> float32 [P, dim], unit rows; NaN rows where no face was found.
        det_score: Detector size -> float32 [P] primary-face detector score (NaN without a face).
        quality_ok: Detector size -> bool [P] whether the primary face passes the quality rule.
        photo_ids: Detector size -> photo id (sha256) of each photo as ingested ("" if not ingested).
        cache_dirs: Detector size -> the pass's cache folder.
    """

    record_ids: list[str]
    vectors: dict[Variant, np.ndarray] = field(default_factory=dict)
    det_score: dict[int, np.ndarray] = field(default_factory=dict)
    quality_ok: dict[int, np.ndarray] = field(default_factory=dict)
    photo_ids: dict[int, list[str]] = field(default_factory=dict)
    cache_dirs: dict[int, str] = field(default_factory=dict)

    def get(self, variant: Variant) -> np.ndarray:
        try:
            return self.vectors[variant]
        except KeyError:
            raise KeyError(f"variant {variant.label} was not extracted (have {[v.label for v in self.vectors]})") \
                from None

    def has_face(self, variant: Variant) -> np.ndarray:
        """bool [P]: the photo has a primary face under ``variant``."""
        return ~np.isnan(self.get(variant)[:, 0])


def l2_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of float [N, D] (NaN rows stay NaN)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def passes_for(variants: Iterable[Variant]) -> dict[int, tuple[list[str], list[str]]]:
    """Detector size -> (recognisers, recognisers whose mirrored crop is needed) covering ``variants``.

    Only a recogniser with a flip TTA variant embeds the mirror: SFace's mirror alone costs ~30 ms a face."""
    out: dict[int, tuple[list[str], list[str]]] = {}
    for v in variants:
        recs, mirrored = out.get(v.detect_size, ([], []))
        out[v.detect_size] = (sorted({*recs, v.recogniser}),
                              sorted({*mirrored, v.recogniser}) if v.flip_tta else mirrored)
    return out


def extract_variants(spark: SparkSession, cfg: Config, labelled: LabelledSet, variants: Iterable[Variant],
                     cache_root: str) -> EmbeddingStore:
    """Run (or reuse) one cached pass per detector size and return the embeddings of ``variants``.

    The set must already be ingested (record ids ``<set>/<path>``, see :mod:`facelink.evaluation.dataset`).
    """
    wanted = sorted(set(variants))
    store = EmbeddingStore(labelled.record_ids)
    set_ids = spark.createDataFrame([(r,) for r in store.record_ids], "record_id string")
    photos = read_table(spark, cfg, "photos").join(F.broadcast(set_ids), "record_id", how="inner").select(
        "record_id", "photo_id", "content"
    )
    for size, (recognisers, mirrored) in sorted(passes_for(wanted).items()):
        settings = pass_settings(cfg, size, recognisers, mirrored)
        cache_dir = f"{cache_root.rstrip('/')}/{pass_cache_key(settings)}"
        store.cache_dirs[size] = cache_dir
        rows = _run_pass(spark, photos, settings, cache_dir, cfg.extract.photos_per_partition)
        _fill(store, rows.join(F.broadcast(set_ids), "record_id", how="inner").toPandas(), size,
              [v for v in wanted if v.detect_size == size])
    return store


def _run_pass(spark: SparkSession, photos: DataFrame, settings: ExtractSettings, cache_dir: str,
              per_task: int) -> DataFrame:
    cached = _read_parquet(spark, cache_dir)
    pending = photos if cached is None else photos.join(
        cached.select("record_id", "photo_id"), ["record_id", "photo_id"], how="left_anti"
    )
    pending = pending.cache()
    try:
        n = pending.count()
        if n:
            log.info("evaluation pass %s at %d: extracting %d photos", pass_cache_key(settings),
                     settings.detect_size, n)
            started = time.perf_counter()
            (
                pending.repartition(max(1, math.ceil(n / per_task)), "photo_id")
                .mapInPandas(make_extract_fn(settings), schema=PRIMARY_SCHEMA)
                .write.mode("append").parquet(cache_dir)
            )
            log.info("evaluation pass %s: %d photos in %.0f s", pass_cache_key(settings), n,
                     time.perf_counter() - started)
        else:
            log.info("evaluation pass %s at %d: every photo cached", pass_cache_key(settings), settings.detect_size)
    finally:
        pending.unpersist()
    out = _read_parquet(spark, cache_dir)
    return out if out is not None else spark.createDataFrame([], PRIMARY_SCHEMA)


def _read_parquet(spark: SparkSession, path: str) -> DataFrame | None:
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "needs a classic (JVM) SparkSession"
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(hpath):
        return None
    return spark.read.schema(PRIMARY_SCHEMA).parquet(path)


def _fill(store: EmbeddingStore, rows: pd.DataFrame, size: int, variants: Sequence[Variant]) -> None:
    """Put one pass's rows (any order, possibly repeated) into ``store`` as arrays aligned with its photos."""
    rows = rows.sort_values(["record_id", "photo_id"]).drop_duplicates("record_id", keep="first")
    pos = {r: i for i, r in enumerate(store.record_ids)}
    n = len(store.record_ids)
    det = np.full(n, np.nan, np.float32)
    ok = np.zeros(n, bool)
    pids = [""] * n
    plain: dict[str, np.ndarray] = {}
    for rid, pid, status, score, q_ok, embs in zip(rows["record_id"], rows["photo_id"], rows["status"],
                                                   rows["det_score"], rows["quality_ok"], rows["embeddings"],
                                                   strict=True):
        i = pos[rid]
        pids[i] = pid
        if status != "ok" or embs is None:
            continue
        det[i], ok[i] = score, bool(q_ok)
        for name, vec in dict(embs).items():
            if name not in plain:
                plain[name] = np.full((n, len(vec)), np.nan, np.float32)
            plain[name][i] = np.asarray(vec, np.float32)
    store.det_score[size], store.quality_ok[size], store.photo_ids[size] = det, ok, pids
    for v in variants:
        if v.recogniser not in plain:
            dim = 128
            store.vectors[v] = np.full((n, dim), np.nan, np.float32)
            continue
        base = plain[v.recogniser]
        store.vectors[v] = l2_rows(base + plain[v.recogniser + MIRROR]) if v.flip_tta else base


def check_against_faces(spark: SparkSession, cfg: Config, store: EmbeddingStore, variants: Sequence[Variant],
                        weights: Sequence[float] = (1.0,)) -> dict[str, Any]:
    """Compare the ``faces`` table's primary embeddings of the set (model id :func:`recogniser_id` of ``cfg``)
    with the cached ``variants``, fused with ``weights`` when there are several (as production fuses).

    Returns:
        ``model_id``, ``compared`` (photos with a face on both sides), ``face_mismatch`` (photos with a face
        on one side only) and ``max_abs_diff``.

    Raises:
        EvaluationError: The two disagree: ``faces`` was extracted with other settings than the configured
            ones (thresholds, alignment). Evaluate in a fresh lake, or re-extract.
    """
    model_id = recogniser_id(cfg)
    set_ids = spark.createDataFrame([(r,) for r in store.record_ids], "record_id string")
    faces = (
        read_table(spark, cfg, "faces")
        .filter((F.col("model_id") == model_id) & (F.col("face_index") >= 0) & F.col("is_primary"))
        .join(F.broadcast(set_ids), "record_id", how="inner")
        .select("record_id", "embedding").toPandas()
    )
    pos = {r: i for i, r in enumerate(store.record_ids)}
    members = [store.get(v) for v in variants]
    cached = fuse_embeddings(members, weights) if len(members) > 1 else members[0]
    table = np.full_like(cached, np.nan)
    for rid, emb in zip(faces["record_id"], faces["embedding"], strict=True):
        table[pos[rid]] = np.asarray(emb, np.float32)
    in_table, in_cache = ~np.isnan(table[:, 0]), ~np.isnan(cached[:, 0])
    both = in_table & in_cache
    diff = float(np.max(np.abs(table[both] - cached[both]))) if both.any() else 0.0
    label = " + ".join(v.label for v in variants)
    result = {"model_id": model_id, "variant": label, "compared": int(both.sum()),
              "face_mismatch": int((in_table != in_cache).sum()), "max_abs_diff": diff}
    if result["face_mismatch"] or diff > FACES_TOLERANCE:
        raise EvaluationError(
            f"faces rows of {model_id} disagree with the configured pipeline ({label}): {result}; "
            "they were extracted with other settings (thresholds, alignment): evaluate in a "
            "fresh lake (--set lake.root=...) or re-extract"
        )
    log.info("faces table matches the cached %s: %s", label, result)
    return result


def measure_cost(cfg: Config, variants: Sequence[Variant], photos: Sequence[bytes], repeats: int = 3
                 ) -> dict[str, float]:
    """Time the extract job's pipeline for some variants on ``photos``, single-threaded, in this process.

    The pipeline is what :func:`facelink.extraction.settings.build_extraction_pipeline` builds for a recogniser made
    of the variants' models (detection, alignment and quality once, then each member's embedding with its own flip
    TTA); the variants must share one detector size. The fastest of ``repeats`` timed runs is kept (after one warm-up
    batch), which is the least disturbed by other load on a shared machine.

    Returns:
        ``<stage>_ms_per_photo`` for decode, detect, align, quality, embed and total, and ``photos``.

    Raises:
        ValueError: No variants, or variants at different detector sizes.
    """
    sizes = {v.detect_size for v in variants}
    if len(sizes) != 1:
        raise ValueError(f"one pipeline runs at one detector size, got {sorted(sizes)}")
    base = ExtractSettings.from_config(cfg, variants[0].recogniser)
    members = Recogniser("measured", tuple(model_spec(cfg, v.recogniser) for v in variants),
                         (1.0 / len(variants),) * len(variants), tuple(v.flip_tta for v in variants))
    settings = replace(base, recogniser=members, detect_size=variants[0].detect_size, output="primary")
    pipeline = build_extraction_pipeline(settings, threads=1, cached=False)
    pipeline.process_batch(list(photos[:8]))
    best: dict[str, float] | None = None
    for _ in range(max(1, repeats)):
        pipeline.timings.reset()
        pipeline.process_batch(list(photos))
        got = pipeline.timings.as_dict()
        if best is None or got["total_ms_per_photo"] < best["total_ms_per_photo"]:
            best = got
    assert best is not None
    keys = [k for k in best if k.endswith("_ms_per_photo")]
    return {**{k: round(best[k], 3) for k in keys}, "photos": float(len(photos))}
