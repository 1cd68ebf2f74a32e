"""What a search run reads before it searches, made once for match and dedup alike.

:func:`plan_search` reads the index version in force for a model id and its calibration, turns the bands
(FPIR levels) into score thresholds for the gallery's size, takes the loosest as the floor below which
nothing is stored, and gives each partition the nprobe that reaches the recall target for neighbours above
that floor (``index.search_breadth``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.errors import InputError
from facelink.index.gallery import current_index, manifest_gallery_quality
from facelink.lake.fs import LakeFs, lake_fs
from facelink.search.calibration import Calibration, load_calibration
from facelink.search.scoring import band_col, band_thresholds, fmr_udf, fpir_udf, precision_detail
from facelink.search.udf import search_gallery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchPlan:
    """Everything a search run fixes at its start.

    Attributes:
        model_id: The embeddings searched.
        index_version: The version in force, read once.
        manifest: Its ``index_manifest`` rows, each with the ``nprobe`` this run searches with.
        calibration: The calibration in force for ``model_id``.
        gallery_size: Vectors in the version (N of the FPIR model).
        bands: Band name -> FPIR level.
        thresholds: Band name -> score threshold at ``gallery_size``.
        floor: The loosest threshold: nothing below it is stored.
        search_breadth: ``index.search_breadth`` (``floor`` or ``knn``).
        gallery_quality: ``index.gallery_quality`` the version was built with (``flag``: faces failing the
            quality rule are searched and flagged; ``exclude``: not searched).
        lake: The lake's filesystem, which the executors load the index files through.
    """

    model_id: str
    index_version: str
    manifest: tuple[dict[str, Any], ...]
    calibration: Calibration
    gallery_size: int
    bands: dict[str, float]
    thresholds: dict[str, float]
    floor: float
    search_breadth: str
    gallery_quality: str
    lake: LakeFs = field(default_factory=LakeFs, compare=False)

    @property
    def nprobe(self) -> dict[str, int]:
        """nprobe searched in each partition."""
        return {str(r["partition"]): int(r["nprobe"]) for r in self.manifest}

    def audit_detail(self) -> dict[str, Any]:
        """What the run's ``audit.detail`` records of its plan: breadth, gallery rule, nprobe, calibration, N,
        thresholds and the precision of its estimates (floors, the FPIR model's measured ranges)."""
        return {"search_breadth": self.search_breadth, "gallery_quality": self.gallery_quality,
                "nprobe": self.nprobe, "calibration": self.calibration.version,
                "gallery_size": self.gallery_size, "band_thresholds": self.thresholds,
                **precision_detail(self.calibration, self.bands, self.gallery_size)}

    def search(self, queries: DataFrame, k: int, threads: int, partitions: Sequence[str] | None = None) -> DataFrame:
        """``(qid, rank, score, face_id)``: the top ``k`` hits of each ``(qid, embedding)`` query at or above the
        floor."""
        hits = search_gallery(queries, self.manifest, self.index_version, k, threads, partitions, self.lake)
        return hits.filter(F.col("score") >= F.lit(self.floor))

    def band(self, score: Column) -> Column:
        """The tightest band ``score`` reaches."""
        return band_col(score, self.thresholds)

    def est_fpir(self, score: Column) -> Column:
        """Estimated FPIR of ``score`` at the gallery's size (never below the model's floor)."""
        return fpir_udf(self.calibration, self.gallery_size)(score)

    def est_fmr(self, score: Column) -> Column:
        """Estimated FMR of one comparison at ``score`` (never below the calibration's FMR floor)."""
        return fmr_udf(self.calibration)(score)


def rows_for_floor(manifest: list[dict[str, Any]], floor: float, breadth: str) -> list[dict[str, Any]]:
    """Manifest rows with ``nprobe`` set for a run that keeps only candidates scoring at least ``floor``.

    ``breadth="floor"`` takes each partition's nprobe measured for neighbours above the floor
    (``facelink.index.params.nprobe_for_floor``; the published top-10 nprobe where none was measured);
    ``"knn"`` keeps the published nprobe. The nprobe used is part of the searcher's cache key.
    """
    from facelink.index.params import nprobe_for_floor

    if breadth not in ("floor", "knn"):
        raise ValueError(f"index.search_breadth must be 'floor' or 'knn', got {breadth!r}")
    out = []
    for row in manifest:
        by_score = json.loads(row["params"]).get("nprobe_by_score") if row.get("params") else None
        nprobe = nprobe_for_floor(int(row["nprobe"]), by_score, floor) if breadth == "floor" else int(row["nprobe"])
        out.append({**row, "nprobe": nprobe})
    return out


def plan_search(spark: SparkSession, cfg: Config, model_id: str, bands: dict[str, float]) -> SearchPlan:
    """The plan of a search of ``model_id``'s index in force with ``bands`` (FPIR levels by band name).

    Raises:
        InputError: No published index for ``model_id``, one built with another ``index.gallery_quality`` than
            configured, no calibration, or no bands.
    """
    version, manifest = current_index(spark, cfg, model_id)
    if version is None:
        raise InputError(f"no published index for {model_id}: run jobs.build_index first")
    built_with = manifest_gallery_quality(manifest)
    if built_with != cfg.index.gallery_quality:
        raise InputError(f"index {version} of {model_id} was built with index.gallery_quality={built_with}, the "
                         f"configuration says {cfg.index.gallery_quality}: run jobs.build_index first")
    cal = load_calibration(cfg, model_id)
    n = sum(int(r["vector_count"]) for r in manifest)
    thresholds = band_thresholds(cal, bands, n)
    floor = min(thresholds.values())
    breadth = cfg.index.search_breadth
    plan = SearchPlan(model_id, version, tuple(rows_for_floor(manifest, floor, breadth)), cal, n, dict(bands),
                      thresholds, floor, breadth, cfg.index.gallery_quality, lake_fs(cfg))
    log.info("search of %s index %s: floor %.4f, nprobe by partition %s", model_id, version, floor, plan.nprobe)
    return plan
