"""What the review report shows, read from the lake's Delta tables into small plain-Python records.

Every function here reads; none writes. Tables that a lake may not have yet (``dq_results``, ``reviews``)
are read only when they exist, so building a report never creates a table. The records are small (the
report caps how many candidates it shows); photos and thumbnails are handled in :mod:`facelink.report.thumbs`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.errors import InputError
from facelink.lake.tables import read_table, table_exists
from facelink.rates import format_rate

#: Face quality measurements shown for each side of a candidate, with their display names and units.
QUALITY_FIELDS = (
    ("det_score", "detector score", ""),
    ("inter_eye_px", "inter-eye", " px"),
    ("sharpness", "sharpness", ""),
    ("brightness", "brightness", ""),
    ("contrast", "contrast", ""),
    ("roll_deg", "roll", "°"),
    ("yaw", "yaw", ""),
)


@dataclass(frozen=True)
class RunAccount:
    """The accountable record (``audit``) of one run: who, why, under what authority, with what."""

    run_id: str
    job: str
    operator: str | None
    purpose: str | None
    authority: str | None
    model_id: str | None
    index_version: str | None
    outcome: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    inputs: dict[str, int]
    detail: dict[str, Any]

    @property
    def calibration(self) -> str | None:
        value = self.detail.get("calibration")
        return str(value) if value is not None else None

    @property
    def band_thresholds(self) -> dict[str, float]:
        raw = self.detail.get("band_thresholds") or {}
        return {str(k): float(v) for k, v in raw.items()}

    @property
    def gallery_size(self) -> int | None:
        value = self.detail.get("gallery_size")
        return int(value) if value is not None else None

    @property
    def fmr_floor(self) -> float | None:
        """Smallest FMR the run's calibration measured (None: the run predates the record)."""
        value = self.detail.get("fmr_floor")
        return float(value) if value is not None else None

    @property
    def fpir_floor(self) -> float | None:
        """Smallest FPIR the run's calibration measured on searches (None: not recorded)."""
        value = self.detail.get("fpir_floor")
        return float(value) if value is not None else None

    @property
    def precision(self) -> str:
        """In words: over what the run's FPIR estimates were measured and where they are extrapolated."""
        model = self.detail.get("fpir_model")
        if not isinstance(model, dict):
            return "not recorded (calibration without a measured FPIR model)"
        lo, hi = model["gallery_sizes_measured"]
        text = (f"FPIR measured from {format_rate(model['fpir_measured'][0], 0.0)} to "
                f"{format_rate(model['fpir_measured'][1], 0.0)} on galleries of {lo:,} to {hi:,} faces")
        if model.get("extrapolated_in_gallery_size"):
            text += f"; this gallery ({model['gallery_size']:,} faces) is larger: its thresholds are extrapolated"
        below = model.get("levels_below_measured") or []
        if below:
            text += f"; band(s) {', '.join(below)} lie below the measured FPIR: extrapolated"
        above = model.get("thresholds_above_measured_scores") or []
        if above:
            text += f"; the threshold of band(s) {', '.join(above)} lies above every top score measured"
        return text


@dataclass(frozen=True)
class StageRow:
    """One job run as ``runs`` records it."""

    job: str
    run_id: str
    status: str
    started_at: dt.datetime
    seconds: float
    counts: dict[str, int]
    error: str | None


@dataclass(frozen=True)
class DqRow:
    """One expectation's outcome from ``dq_results``."""

    run_id: str
    table_name: str
    table_version: int | None
    suite: str
    expectation: str
    severity: str
    success: bool
    observed: str | None
    evaluated_at: dt.datetime


@dataclass(frozen=True)
class FaceSide:
    """One side of a candidate: the record, the photo, the compared face and its quality measurements."""

    label: str
    record_id: str
    photo_id: str
    face_index: int | None = None
    quality_ok: bool | None = None
    quality_reasons: tuple[str, ...] = ()
    measures: dict[str, float] = field(default_factory=dict)
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class PairItem:
    """One candidate pair for review, with its scores and the subject id a reviewer records a decision on."""

    subject_type: str
    subject_id: str
    heading: str
    score: float
    est_fmr: float | None
    est_fpir: float
    band: str
    left: FaceSide
    right: FaceSide
    source_run_id: str
    reviews: int = 0
    fmr_floor: float | None = None
    fpir_floor: float | None = None


@dataclass(frozen=True)
class ClusterItem:
    """A duplicate cluster of a dedup run: its member records and the candidate pairs that link them."""

    cluster_id: str
    size: int
    members: tuple[str, ...]
    pairs: tuple[PairItem, ...]
    pairs_total: int
    best_score: float
    best_band: str


def latest_run_id(spark: SparkSession, cfg: Config, job: str) -> str | None:
    """The id of the newest succeeded run of ``job`` (by end time), or None when it never ran."""
    runs = read_table(spark, cfg, "runs").filter((F.col("job") == job) & (F.col("status") == "succeeded"))
    row = runs.orderBy(F.desc("ended_at"), F.desc("run_id")).select("run_id").first()
    return str(row["run_id"]) if row else None


def require_run(spark: SparkSession, cfg: Config, job: str, run_id: str) -> None:
    """Raise :class:`InputError` unless ``runs`` holds a succeeded run ``run_id`` of ``job``."""
    runs = read_table(spark, cfg, "runs").filter(
        (F.col("job") == job) & (F.col("run_id") == run_id) & (F.col("status") == "succeeded"))
    if runs.limit(1).count() == 0:
        raise InputError(f"no succeeded {job} run with id {run_id!r} in {cfg.table_path('runs')}")


def run_account(spark: SparkSession, cfg: Config, run_id: str) -> RunAccount | None:
    """The latest ``audit`` row of ``run_id`` (a succeeded one if any), or None."""
    audit = read_table(spark, cfg, "audit").filter(F.col("run_id") == run_id)
    row = audit.orderBy((F.col("outcome") == "succeeded").desc(), F.desc("ended_at")).first()
    if row is None:
        return None
    try:
        detail = json.loads(row["detail"]) if row["detail"] else {}
    except json.JSONDecodeError:
        detail = {"unparsed": row["detail"]}
    return RunAccount(row["run_id"], row["job"], row["operator"], row["purpose"], row["authority"], row["model_id"],
                      row["index_version"], row["outcome"], row["started_at"], row["ended_at"],
                      dict(row["inputs"] or {}), detail)


def stage_rows(spark: SparkSession, cfg: Config, recent: int = 25) -> tuple[list[StageRow], list[StageRow]]:
    """(the latest run of each job, the ``recent`` newest runs of any job), newest first."""
    runs = read_table(spark, cfg, "runs")
    newest = Window.partitionBy("job").orderBy(F.desc("started_at"), F.desc("ended_at"))
    latest = runs.withColumn("_n", F.row_number().over(newest)).filter(F.col("_n") == 1).drop("_n")
    return (_stage_list(latest.orderBy(F.desc("started_at")).collect()),
            _stage_list(runs.orderBy(F.desc("started_at")).limit(recent).collect()))


def _stage_list(rows: Iterable[Any]) -> list[StageRow]:
    return [StageRow(r["job"], r["run_id"], r["status"], r["started_at"],
                     (r["ended_at"] - r["started_at"]).total_seconds(), dict(r["counts"] or {}), r["error"])
            for r in rows]


def dq_rows(spark: SparkSession, cfg: Config) -> list[DqRow] | None:
    """Every expectation of the newest gate run of each table in ``dq_results``; None without that table."""
    if not table_exists(spark, cfg, "dq_results"):
        return None
    dq = spark.read.format("delta").load(cfg.table_path("dq_results"))
    newest = Window.partitionBy("table_name").orderBy(F.desc("evaluated_at"))
    last_run = dq.withColumn("_n", F.row_number().over(newest)).filter(F.col("_n") == 1).select(
        "table_name", "run_id")
    rows = dq.join(last_run, ["table_name", "run_id"], how="inner").orderBy(
        "success", F.desc("severity"), "table_name", "expectation").collect()
    return [DqRow(r["run_id"], r["table_name"], r["table_version"], r["suite"], r["expectation"], r["severity"],
                  bool(r["success"]), r["observed"], r["evaluated_at"]) for r in rows]


def review_counts(spark: SparkSession, cfg: Config) -> dict[tuple[str, str], int]:
    """(subject_type, subject_id) -> decisions recorded so far in ``reviews`` (empty without that table)."""
    if not table_exists(spark, cfg, "reviews"):
        return {}
    reviews = spark.read.format("delta").load(cfg.table_path("reviews"))
    return {(r["subject_type"], r["subject_id"]): int(r["n"])
            for r in reviews.groupBy("subject_type", "subject_id").agg(F.count("*").alias("n")).collect()}


def scores_by_band(df: DataFrame) -> dict[str, list[float]]:
    """band -> scores of the candidate rows of ``df`` (columns ``band``, ``score``)."""
    out: dict[str, list[float]] = {}
    for r in df.select("band", "score").collect():
        out.setdefault(str(r["band"]), []).append(float(r["score"]))
    return out
