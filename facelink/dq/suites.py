"""Great Expectations suites in code: one or more per checked table, each over a Spark DataFrame.

A :class:`Suite` pairs a *frame* (the table, scoped to a run when asked, with helper columns computed in
Spark where GX has no built-in expectation, or a small derived frame of rates and counts) with a list of
GX expectations, each marked ``critical`` (the gate fails) or ``warning`` (logged and recorded). Suites are
built from the configuration, so thresholds (``dq.*``, ``match.k``, the band names, the recognisers'
dimensions) always follow the run's configuration.

Derived frames (one row per gate run unless said otherwise):

* ``rejects_rate``: the last ingest run (or the scoped one) in ``runs``: ``input_rows``, ``rejects`` and
  ``reject_rate``. ``rejects`` is the larger of the run's recorded ``counts['rejects']`` and the rejects
  rows carrying its run id (a reject keeps the id of the run that *first* rejected it, so the table alone
  under-counts a rerun).
* ``faces_rates``: photos (record, photo, model) seen in ``faces``, the share whose status is ``no_face``
  and the share of primary faces failing the quality rule.
* ``matches_coverage``: one row per match run: probes found in ``matches`` or ``probe_status``, matched
  probes without a status row, and, when the match run recorded ``counts['probes']`` (the probe photos it
  took in), how many of those are in neither table.

Nothing here reads or writes Delta tables except through the :class:`SuiteInputs` it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import great_expectations.expectations as gxe
from great_expectations.expectations import Expectation
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.lake.tables import read_table
from facelink.registry import recogniser, recogniser_id, recogniser_names
from schemas.rejects import REASONS

CRITICAL = "critical"
WARNING = "warning"

#: The column that ties each checked table's rows to the run that wrote them (``--scope-run-id``).
SCOPE_COLUMNS: dict[str, str] = {
    "photos": "ingest_run_id",
    "rejects": "run_id",
    "faces": "extract_run_id",
    "matches": "run_id",
    "probe_status": "run_id",
    "duplicate_candidates": "run_id",
}
CHECKED_TABLES: tuple[str, ...] = tuple(SCOPE_COLUMNS)

#: Other tables a table's suites read (the gate notes their versions too).
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "rejects": ("runs",),
    "matches": ("probe_status", "runs"),
}

#: ``runs.counts`` key under which a match run records how many probe photos it took in.
PROBES_COUNT_KEY = "probes"

FACE_STATUSES = ("ok", "no_face", "decode_error", "error")
PROBE_STATUSES = ("searched", "no_face", "not_extracted", "decode_error", "error")
ROLES = ("gallery", "probe")
SHA256_HEX = r"^[0-9a-f]{64}$"


@dataclass
class SuiteInputs:
    """Where suites get their tables: Delta tables at pinned versions, or DataFrames given in place.

    Attributes:
        spark: the session.
        cfg: the run's configuration.
        scope_run_id: when set, each checked table is filtered to the rows of this run.
        versions: table -> Delta version to read (latest when absent).
        frames: table -> DataFrame used instead of the Delta table (tests, ad-hoc checks).
    """

    spark: SparkSession
    cfg: Config
    scope_run_id: str | None = None
    versions: Mapping[str, int] = field(default_factory=dict)
    frames: Mapping[str, DataFrame] = field(default_factory=dict)
    _read: dict[str, DataFrame] = field(default_factory=dict, init=False, repr=False)

    def raw(self, name: str) -> DataFrame:
        """The whole table ``name`` (unscoped); each table is resolved once (several suites read it)."""
        if name in self.frames:
            return self.frames[name]
        if name not in self._read:
            self._read[name] = read_table(self.spark, self.cfg, name, self.versions.get(name))
        return self._read[name]

    def table(self, name: str) -> DataFrame:
        """Table ``name`` restricted to :attr:`scope_run_id` when one is given."""
        df = self.raw(name)
        if self.scope_run_id and name in SCOPE_COLUMNS:
            df = df.filter(F.col(SCOPE_COLUMNS[name]) == F.lit(self.scope_run_id))
        return df


@dataclass(frozen=True)
class Suite:
    """One GX expectation suite over one frame; its results are filed under ``table``."""

    name: str
    table: str
    frame: Callable[[SuiteInputs], DataFrame]
    expectations: list[Expectation]
    #: a derived frame of a few rows (one per run): these columns' values are recorded with the outcome,
    #: passed or not, and the frame is collected to the driver once instead of recomputed per GX metric
    observe: tuple[str, ...] = ()
    #: the column naming each row of a derived frame (the run it describes), shown beside the values
    key: str | None = None


def _exp(cls: type[Expectation], severity: str, description: str, **kwargs: object) -> Expectation:
    return cls(severity=severity, description=description, **kwargs)  # type: ignore[arg-type]


def _not_null(columns: tuple[str, ...]) -> list[Expectation]:
    return [
        _exp(gxe.ExpectColumnValuesToNotBeNull, CRITICAL, f"{c} is never null", column=c) for c in columns
    ]


def _unique(columns: tuple[str, ...]) -> Expectation:
    if len(columns) == 1:
        return _exp(gxe.ExpectColumnValuesToBeUnique, CRITICAL, f"{columns[0]} is unique", column=columns[0])
    return _exp(gxe.ExpectCompoundColumnsToBeUnique, CRITICAL, f"({', '.join(columns)}) is unique",
                column_list=list(columns))


def _between(column: str, lo: float | None, hi: float | None, severity: str = CRITICAL,
             description: str = "") -> Expectation:
    if not description:
        description = (f"{column} >= {lo}" if hi is None else f"{column} <= {hi}" if lo is None
                       else f"{column} within [{lo}, {hi}]")
    return _exp(gxe.ExpectColumnValuesToBeBetween, severity, description, column=column, min_value=lo,
                max_value=hi)


def _in_set(column: str, values: tuple[str, ...] | list[str], severity: str = CRITICAL) -> Expectation:
    return _exp(gxe.ExpectColumnValuesToBeInSet, severity, f"{column} is one of {sorted(values)}",
                column=column, value_set=sorted(values))


def _is_true(column: str, description: str, severity: str = CRITICAL) -> Expectation:
    return _exp(gxe.ExpectColumnValuesToBeInSet, severity, description, column=column, value_set=[True])


def _not_empty(what: str) -> Expectation:
    return _exp(gxe.ExpectTableRowCountToBeBetween, WARNING, f"{what} has rows", min_value=1)


def _score_range(cfg: Config, column: str, severity: str = CRITICAL) -> Expectation:
    """Cosine scores lie in [-1, 1]; the bounds allow the float32 rounding of two unit vectors' product
    (an exact duplicate photo scores 1.0000001) within the norm tolerance the faces suite enforces."""
    slack = 2 * cfg.dq.embedding_norm_tol
    return _between(column, -1.0 - slack, 1.0 + slack, severity,
                    f"{column} is a cosine in [-1, 1] (slack 2 x dq.embedding_norm_tol={slack:g})")


def _ratio(num: F.Column, den: F.Column) -> F.Column:
    return F.when(den > 0, num.cast("double") / den)


# ---------------------------------------------------------------------------------------------- frames


def photos_frame(src: SuiteInputs) -> DataFrame:
    """``photos`` without the image bytes (the checks never need them)."""
    return src.table("photos").select(
        "record_id", "photo_id", "role", "partition", "byte_length", "width", "height", "ingest_run_id",
    )


def faces_frame(src: SuiteInputs) -> DataFrame:
    """``faces`` with helper columns for the embedding checks, set on ``status = 'ok'`` rows only.

    ``embedding_len`` (0 for a missing embedding), ``expected_dim`` (the recogniser's dimension from the
    registry by ``model_id``, else the configured recogniser's), ``embedding_norm`` (L2) and
    ``status_index_consistent`` (face rows have ``face_index >= 0``, status rows ``-1``).
    """
    cfg = src.cfg
    dims = {recogniser_id(cfg, name): recogniser(cfg, name).dim for name in recogniser_names(cfg)}
    default_dim = recogniser(cfg).dim
    dim_map = F.create_map(*[x for k, v in dims.items() for x in (F.lit(k), F.lit(v))])
    ok = F.col("status") == "ok"
    squares = F.aggregate("embedding", F.lit(0.0).cast("double"), lambda acc, x: acc + x.cast("double") * x)
    return src.table("faces").select(
        "record_id", "photo_id", "role", "model_id", "face_index", "status", "det_score", "extract_run_id",
        F.when(ok, F.coalesce(F.size("embedding"), F.lit(0))).alias("embedding_len"),
        F.when(ok, F.coalesce(dim_map[F.col("model_id")], F.lit(default_dim))).alias("expected_dim"),
        F.when(ok, F.sqrt(squares)).alias("embedding_norm"),
        (ok == (F.col("face_index") >= 0)).alias("status_index_consistent"),
    )


def faces_rates_frame(src: SuiteInputs) -> DataFrame:
    """One row: ``photos``, ``no_face_rate`` and ``quality_fail_rate`` (among primary faces)."""
    ok_primary = (F.col("status") == "ok") & F.col("is_primary")
    per_photo = src.table("faces").groupBy("record_id", "photo_id", "model_id").agg(
        F.max((F.col("status") == "no_face").cast("int")).alias("no_face"),
        F.max(ok_primary.cast("int")).alias("primary"),
        F.max((ok_primary & ~F.col("quality_ok")).cast("int")).alias("quality_fail"),
    )
    totals = per_photo.agg(
        F.count(F.lit(1)).alias("photos"),
        F.coalesce(F.sum("no_face"), F.lit(0)).alias("no_face_photos"),
        F.coalesce(F.sum("primary"), F.lit(0)).alias("primary_faces"),
        F.coalesce(F.sum("quality_fail"), F.lit(0)).alias("quality_failures"),
    )
    return totals.select(
        "photos", "no_face_photos", "primary_faces", "quality_failures",
        _ratio(F.col("no_face_photos"), F.col("photos")).alias("no_face_rate"),
        _ratio(F.col("quality_failures"), F.col("primary_faces")).alias("quality_fail_rate"),
    )


def latest_runs(src: SuiteInputs, job: str | None = None) -> DataFrame:
    """The newest ``runs`` row of each run id (a retried run id has several)."""
    runs = src.raw("runs")
    if job:
        runs = runs.filter(F.col("job") == job)
    newest = Window.partitionBy("run_id").orderBy(F.col("started_at").desc())
    return runs.withColumn("_n", F.row_number().over(newest)).filter("_n = 1").drop("_n")


def reject_rate_frame(src: SuiteInputs) -> DataFrame:
    """One row for the scoped (else the most recent) ingest run: its input rows, rejects and reject rate."""
    runs = latest_runs(src, "ingest").filter(F.col("counts").getItem("input_rows").isNotNull())
    if src.scope_run_id:
        runs = runs.filter(F.col("run_id") == F.lit(src.scope_run_id))
    last = runs.orderBy(F.col("started_at").desc()).limit(1).select(
        F.col("run_id").alias("ingest_run_id"),
        F.col("counts").getItem("input_rows").alias("input_rows"),
        F.col("counts").getItem("rejects").alias("recorded_rejects"),
    )
    table_rejects = src.raw("rejects").groupBy("run_id").agg(F.count(F.lit(1)).alias("reject_rows"))
    joined = last.join(table_rejects, last["ingest_run_id"] == table_rejects["run_id"], how="left")
    rejects = F.greatest(F.coalesce("recorded_rejects", F.lit(0)), F.coalesce("reject_rows", F.lit(0)))
    return joined.select(
        "ingest_run_id", "input_rows", rejects.alias("rejects"),
        _ratio(rejects, F.col("input_rows")).alias("reject_rate"),
    )


def matches_frame(src: SuiteInputs) -> DataFrame:
    return src.table("matches").drop("probe_quality_ok", "candidate_quality_ok")


def matches_coverage_frame(src: SuiteInputs) -> DataFrame:
    """One row per match run: probes accounted for, probes lacking status, unaccounted."""
    matched = src.table("matches").groupBy("run_id", "probe_photo_id").agg(
        F.count(F.lit(1)).alias("n_matches")
    )
    status = src.table("probe_status").select("run_id", "probe_photo_id", "n_candidates")
    per_probe = matched.join(status, ["run_id", "probe_photo_id"], how="full")
    per_run = per_probe.groupBy("run_id").agg(
        F.count(F.lit(1)).alias("probes_accounted"),
        F.count_if(F.col("n_candidates").isNull()).alias("matched_without_status"),
        F.count_if(
            F.col("n_candidates").isNotNull() & (F.coalesce("n_matches", F.lit(0)) != F.col("n_candidates"))
        ).alias("candidate_count_mismatches"),
    )
    recorded = latest_runs(src).select(
        "run_id", F.col("counts").getItem(PROBES_COUNT_KEY).alias("probes_expected")
    )
    return per_run.join(recorded, "run_id", how="left").select(
        "run_id", "probes_expected", "probes_accounted", "matched_without_status",
        "candidate_count_mismatches",
        (F.col("probes_expected") - F.col("probes_accounted")).alias("unaccounted_probes"),
    )


def duplicate_candidates_frame(src: SuiteInputs) -> DataFrame:
    """Candidates with ``distinct_records`` (two different records) and ``sides_ordered`` (a before b)."""
    side_a = F.struct("record_id_a", "photo_id_a")
    side_b = F.struct("record_id_b", "photo_id_b")
    return src.table("duplicate_candidates").select(
        "run_id", "pair_id", "record_id_a", "photo_id_a", "record_id_b", "photo_id_b", "score", "est_fmr",
        "est_fpir", "band", "model_id", "index_version",
        (F.col("record_id_a") != F.col("record_id_b")).alias("distinct_records"),
        (side_a < side_b).alias("sides_ordered"),
    )


# ---------------------------------------------------------------------------------------------- suites


def photos_suites(cfg: Config) -> list[Suite]:
    return [Suite("photos", "photos", photos_frame, [
        _not_empty("photos"),
        *_not_null(("record_id", "photo_id", "role", "partition", "ingest_run_id")),
        _unique(("record_id", "photo_id")),
        _in_set("role", ROLES),
        _exp(gxe.ExpectColumnValuesToMatchRegex, CRITICAL, "photo_id is a sha256 hex digest",
             column="photo_id", regex=SHA256_HEX),
        _between("byte_length", 1, cfg.ingest.max_file_bytes),
        _between("width", 1, None, WARNING),
        _between("height", 1, None, WARNING),
    ])]


def rejects_suites(cfg: Config) -> list[Suite]:
    return [
        Suite("rejects", "rejects", lambda src: src.table("rejects"), [
            *_not_null(("reject_id", "job", "role", "reason", "run_id")),
            _unique(("reject_id",)),
            _in_set("reason", REASONS),
            _in_set("role", ROLES),
        ]),
        Suite("rejects_rate", "rejects", reject_rate_frame, [
            _between("reject_rate", 0.0, cfg.dq.max_reject_rate, description=(
                f"reject rate of the ingest run at most dq.max_reject_rate={cfg.dq.max_reject_rate}")),
        ], observe=("reject_rate",), key="ingest_run_id"),
    ]


def faces_suites(cfg: Config) -> list[Suite]:
    tol = cfg.dq.embedding_norm_tol
    return [
        Suite("faces", "faces", faces_frame, [
            _not_empty("faces"),
            *_not_null(("record_id", "photo_id", "model_id", "status", "extract_run_id")),
            _unique(("record_id", "photo_id", "model_id", "face_index")),
            _in_set("status", FACE_STATUSES),
            _in_set("role", ROLES),
            _exp(gxe.ExpectColumnPairValuesToBeEqual, CRITICAL,
                 "an ok face's embedding has the recogniser's dimension",
                 column_A="embedding_len", column_B="expected_dim", ignore_row_if="either_value_is_missing"),
            _between("embedding_norm", 1.0 - tol, 1.0 + tol,
                     description=f"an ok face's embedding has L2 norm 1 within dq.embedding_norm_tol={tol}"),
            _is_true("status_index_consistent", "face rows have face_index >= 0, status rows -1"),
            _between("det_score", 0.0, 1.0, WARNING),
        ]),
        Suite("faces_rates", "faces", faces_rates_frame, [
            _between("no_face_rate", 0.0, cfg.dq.max_no_face_rate, description=(
                f"share of photos without a face at most dq.max_no_face_rate={cfg.dq.max_no_face_rate}")),
            _between("quality_fail_rate", 0.0, cfg.dq.max_quality_fail_rate, WARNING,
                     f"share of primary faces failing quality at most dq.max_quality_fail_rate="
                     f"{cfg.dq.max_quality_fail_rate}"),
        ], observe=("no_face_rate", "quality_fail_rate")),
    ]


def matches_suites(cfg: Config) -> list[Suite]:
    return [
        Suite("matches", "matches", matches_frame, [
            _not_empty("matches"),
            *_not_null(("run_id", "probe_record_id", "probe_photo_id", "candidate_record_id",
                        "candidate_photo_id", "model_id", "index_version")),
            _unique(("run_id", "probe_photo_id", "rank")),
            _score_range(cfg, "score"),
            _between("rank", 1, cfg.match.k, description=f"rank within [1, match.k={cfg.match.k}]"),
            _in_set("band", list(cfg.match.bands)),
            _between("est_fpir", 0.0, 1.0),
            _exp(gxe.ExpectColumnPairValuesAToBeGreaterThanB, WARNING,
                 "score at or above the run's threshold", column_A="score", column_B="threshold_score",
                 or_equal=True),
        ]),
        Suite("matches_coverage", "matches", matches_coverage_frame, [
            _between("unaccounted_probes", 0, 0, description=(
                f"every probe of a match run (runs.counts['{PROBES_COUNT_KEY}']) is in matches or "
                "probe_status")),
            _between("matched_without_status", 0, 0,
                     description="every matched probe has a probe_status row"),
            _between("candidate_count_mismatches", 0, 0, WARNING,
                     "probe_status.n_candidates equals the probe's rows in matches"),
        ], observe=("unaccounted_probes", "matched_without_status", "candidate_count_mismatches"), key="run_id"),
    ]


def probe_status_suites(cfg: Config) -> list[Suite]:
    return [Suite("probe_status", "probe_status", lambda src: src.table("probe_status"), [
        _not_empty("probe_status"),
        *_not_null(("run_id", "probe_record_id", "probe_photo_id", "status")),
        _unique(("run_id", "probe_photo_id")),
        _in_set("status", PROBE_STATUSES),
        _between("n_candidates", 0, cfg.match.k,
                 description=f"n_candidates within [0, match.k={cfg.match.k}]"),
        _score_range(cfg, "top_score", WARNING),
        _in_set("top_band", list(cfg.match.bands), WARNING),
    ])]


def duplicate_candidates_suites(cfg: Config) -> list[Suite]:
    return [Suite("duplicate_candidates", "duplicate_candidates", duplicate_candidates_frame, [
        *_not_null(("run_id", "pair_id", "record_id_a", "photo_id_a", "record_id_b", "photo_id_b",
                    "model_id")),
        _unique(("run_id", "pair_id")),
        _is_true("distinct_records", "a candidate pair links two different records"),
        _score_range(cfg, "score"),
        _between("est_fmr", 0.0, 1.0),
        _between("est_fpir", 0.0, 1.0),
        _in_set("band", list(cfg.dedup.bands)),
        _is_true("sides_ordered", "side a is the smaller (record_id, photo_id)", WARNING),
    ])]


SUITE_BUILDERS: dict[str, Callable[[Config], list[Suite]]] = {
    "photos": photos_suites,
    "rejects": rejects_suites,
    "faces": faces_suites,
    "matches": matches_suites,
    "probe_status": probe_status_suites,
    "duplicate_candidates": duplicate_candidates_suites,
}


def suites_for(tables: list[str] | tuple[str, ...], cfg: Config) -> list[Suite]:
    """The suites of ``tables``, in the order given.

    Raises:
        ValueError: a table has no suites (the message lists those that do).
    """
    unknown = [t for t in tables if t not in SUITE_BUILDERS]
    if unknown:
        raise ValueError(f"no data-quality suites for {unknown}; checked tables: {', '.join(CHECKED_TABLES)}")
    return [suite for table in tables for suite in SUITE_BUILDERS[table](cfg)]
