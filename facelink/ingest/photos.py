"""Ingest an archive (or a nightly probe batch) of photos into the ``photos`` Delta table (``jobs.ingest``).

Input is a manifest (CSV or Parquet with ``record_id,path`` and any metadata columns; ``path`` relative to
the manifest's folder or absolute) or a folder of images whose file names give the record id. Every input
row ends as exactly one of: a new photo, a photo already present, or a reject with a reason. The job checks
``rows in = new + already present + rejects`` and fails loudly if it does not hold.

Paths are untrusted: only files under ``ingest.allowed_roots`` (default: the manifest's folder) are read, and
only the files the input lists; a path outside, through a symlink leaving a root, with a ``..`` component, a
scheme not in ``ingest.allowed_schemes`` or a glob character is a reject with its reason
(:mod:`facelink.ingest.input_paths`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.errors import AccountingError, InputError
from facelink.ingest.input_paths import make_verdict_fn, resolve_roots
from facelink.ingest.udf import VALIDATED_SCHEMA, make_validate_fn
from facelink.lake.runs import RunRecorder, new_run_id
from facelink.lake.tables import insert_new
from schemas import get_spec

log = logging.getLogger(__name__)
#: The job name ingest runs and rejects are recorded under.
JOB = "ingest"


@dataclass(frozen=True)
class IngestResult:
    run_id: str
    input_rows: int
    new_photos: int
    already_present: int
    rejects: int
    new_rejects: int


def qualify_path(path: str) -> str:
    """The form Spark's ``binaryFile`` source gives a path: ``file:/abs/path`` for local files."""
    if "://" in path or path.startswith("file:"):
        return path if not path.startswith("file://") else "file:" + path[len("file://"):]
    return "file:" + os.path.abspath(path)


def read_manifest(spark: SparkSession, manifest: str) -> DataFrame:
    """Candidate rows from a manifest: ``row_no, record_id, source_path, metadata``.

    Raises:
        InputError: the manifest is missing or lacks ``record_id`` or ``path``.
    """
    if "://" not in manifest and not os.path.exists(manifest):
        raise InputError(f"manifest not found: {manifest}")
    if manifest.endswith(".parquet") or os.path.isdir(manifest):
        raw = spark.read.parquet(manifest)
    else:
        raw = spark.read.option("header", True).option("inferSchema", False).csv(manifest)
    missing = {"record_id", "path"} - set(raw.columns)
    if missing:
        raise InputError(f"manifest {manifest} lacks columns {sorted(missing)} (has {raw.columns})")
    folder = os.path.dirname(os.path.abspath(manifest)) if "://" not in manifest else manifest.rsplit("/", 1)[0]
    base = qualify_path(folder)
    meta_cols = [c for c in raw.columns if c not in ("record_id", "path")]
    path = F.col("path").cast("string")
    absolute = path.rlike(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|/)")
    source = F.when(path.startswith("/"), F.concat(F.lit("file:"), path)).when(absolute, path).otherwise(
        F.concat(F.lit(base.rstrip("/") + "/"), path)
    )
    metadata = (
        F.map_from_arrays(F.array(*[F.lit(c) for c in meta_cols]),
                          F.array(*[F.col(c).cast("string") for c in meta_cols]))
        if meta_cols
        else F.create_map().cast("map<string,string>")
    )
    return raw.select(
        F.trim(F.col("record_id").cast("string")).alias("record_id"),
        F.regexp_replace(source, r"/\./", "/").alias("source_path"),
        metadata.alias("metadata"),
        path.alias("given_path"),
    ).withColumn("row_no", F.monotonically_increasing_id())


def _parent_dirs(candidates: DataFrame) -> list[str]:
    """Distinct parent folders of the candidates' paths."""
    rows = candidates.select(F.regexp_extract("source_path", r"^(.*)/[^/]*$", 1)).distinct().collect()
    return sorted(r[0] for r in rows if r[0])


def list_files(spark: SparkSession, folders: Sequence[str], recursive: bool = False) -> DataFrame:
    """``path, length`` of every file in ``folders``, through the Hadoop FileSystem API (any URI scheme).

    Spark's own file sources skip zero-length files; listing here keeps them, so an empty file becomes an
    ``empty_file`` reject instead of vanishing. Missing folders list nothing (their rows become
    ``missing_file`` rejects).
    """
    jvm = spark.sparkContext._jvm
    assert jvm is not None, "no JVM behind the SparkContext"
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    found: list[tuple[str, int]] = []
    for folder in folders:
        hpath = jvm.org.apache.hadoop.fs.Path(folder)
        fs = hpath.getFileSystem(hconf)
        if not fs.exists(hpath):
            continue
        it = fs.listFiles(hpath, recursive)
        while it.hasNext():
            status = it.next()
            found.append((qualify_path(status.getPath().toString()), int(status.getLen())))
    schema = "path string, length long"
    return spark.createDataFrame(found, schema) if found else spark.createDataFrame([], schema)


def transform_path_checks(candidates: DataFrame, roots: Sequence[str], schemes: Sequence[str]) -> DataFrame:
    """The candidates with ``path_reason`` and ``path_detail``: why each path may not be read (null: it may).

    See :mod:`facelink.ingest.input_paths`; the checks run on the executors, where the files are read.
    """
    verdicts = candidates.select("row_no", "given_path", "source_path").mapInPandas(
        make_verdict_fn(roots, schemes), schema="row_no long, path_reason string, path_detail string"  # type: ignore[arg-type]
    )
    return candidates.join(verdicts, "row_no", how="left")


def read_listed(spark: SparkSession, candidates: DataFrame, files_meta: DataFrame,
                max_bytes: int) -> tuple[DataFrame, int]:
    """``path, content`` of exactly the listed files that may be read, exist and fit ``max_bytes``; and how
    many files that is.

    Only these paths reach ``binaryFile`` (never a folder, so no other file of a folder is read); the path
    checks refused glob characters, so each path names one file.
    """
    readable = (candidates.filter(F.col("path_reason").isNull()).select("source_path").distinct()
                .join(files_meta.withColumnRenamed("path", "source_path"), "source_path", how="inner")
                .filter((F.col("length") > 0) & (F.col("length") <= max_bytes)))
    paths = sorted(r[0] for r in readable.select("source_path").collect())
    if not paths:
        return spark.createDataFrame([], "path string, content binary"), 0
    return spark.read.format("binaryFile").load(paths).select("path", "content"), len(paths)


def read_folder(spark: SparkSession, folder: str, pattern: str) -> DataFrame:
    """Candidate rows from a folder of images: the record id is group 1 of ``pattern`` on the file name."""
    files = list_files(spark, [qualify_path(folder)], recursive=True)
    name = F.regexp_extract("path", r"([^/]+)$", 1)
    record_id = F.regexp_extract(name, pattern, 1)
    return files.select(
        F.when(record_id == "", None).otherwise(record_id).alias("record_id"),
        F.col("path").alias("source_path"),
        F.create_map().cast("map<string,string>").alias("metadata"),
        F.lit(None).cast("string").alias("given_path"),
    ).withColumn("row_no", F.monotonically_increasing_id())



def transform_validate(candidates: DataFrame, files_meta: DataFrame, files_content: DataFrame, max_bytes: int,
                       max_pixels: int) -> DataFrame:
    """Attach file facts and a reject reason (or none) to every candidate row."""
    with_meta = candidates.join(files_meta.withColumnRenamed("path", "source_path"), "source_path", how="left")
    readable = with_meta.filter(
        F.col("record_id").isNotNull() & (F.col("record_id") != "") & F.col("path_reason").isNull()
        & F.col("length").isNotNull()
        & (F.col("length") > 0) & (F.col("length") <= max_bytes)
    )
    with_content = readable.join(files_content.withColumnRenamed("path", "source_path"), "source_path", how="inner")
    decoded = with_content.select("row_no", "content").mapInPandas(
        make_validate_fn(max_pixels), schema=VALIDATED_SCHEMA  # type: ignore[arg-type]
    )
    joined = with_meta.join(decoded, "row_no", how="left")
    reason = (
        F.when(F.col("record_id").isNull() | (F.col("record_id") == ""), F.lit("missing_record_id"))
        .when(F.col("path_reason").isNotNull(), F.col("path_reason"))
        .when(F.col("length").isNull(), F.lit("missing_file"))
        .when(F.col("length") == 0, F.lit("empty_file"))
        .when(F.col("length") > max_bytes, F.lit("file_too_large"))
        .otherwise(F.col("reason"))
    )
    detail = (
        F.when(F.col("path_reason").isNotNull(), F.col("path_detail"))
        .when(F.col("length").isNull(), F.lit("no such file"))
        .when(F.col("length") > max_bytes, F.format_string("%d bytes > limit %d", F.col("length"), F.lit(max_bytes)))
        .otherwise(F.col("detail"))
    )
    return joined.select(
        "row_no", "record_id", "source_path", "metadata", "length", "photo_id", "format", "width", "height",
        reason.alias("reason"), detail.alias("detail"), "content",
    )


def transform_batch_duplicates(validated: DataFrame) -> DataFrame:
    """Mark repeats of a (record_id, photo_id) key within the batch: exact repeats and conflicting ones."""
    key = Window.partitionBy("record_id", "photo_id").orderBy("row_no")
    meta_json = F.to_json(F.map_entries(F.col("metadata")))
    ranked = validated.withColumn("_n", F.row_number().over(key)).withColumn(
        "_first_meta", F.first(meta_json).over(key)
    )
    is_dup = F.col("reason").isNull() & (F.col("_n") > 1)
    conflicting = meta_json != F.col("_first_meta")
    return ranked.select(
        *[c for c in validated.columns if c not in ("reason", "detail")],
        F.when(is_dup & conflicting, F.lit("conflicting_duplicate"))
        .when(is_dup, F.lit("duplicate_in_batch"))
        .otherwise(F.col("reason")).alias("reason"),
        F.when(is_dup, F.lit("same record_id and photo bytes appear earlier in this batch with "))
        .otherwise(F.col("detail")).alias("_detail0"),
        F.when(is_dup & conflicting, F.lit("different metadata")).when(is_dup, F.lit("the same metadata")).alias("_d1"),
    ).select(
        *[c for c in validated.columns if c not in ("reason", "detail")], "reason",
        F.when(F.col("_d1").isNotNull(), F.concat("_detail0", "_d1")).otherwise(F.col("_detail0")).alias("detail"),
    )


def partition_col(partition_column: str, buckets: int) -> F.Column:
    """The archive partition: a metadata value, or a stable hash bucket of the record id."""
    if partition_column:
        value = F.col("metadata").getItem(partition_column)
        # The partition names index files: made to fit facelink.identifiers' "partition" pattern here.
        safe = F.substring(F.regexp_replace(F.regexp_replace(value, r"[^A-Za-z0-9_.-]", "_"), r"^\.|\.(?=\.)", "_"),
                           1, 64)
        return F.coalesce(F.when(safe != "", safe), F.lit("_unassigned"))
    return F.format_string("b%03d", F.pmod(F.xxhash64("record_id"), F.lit(buckets)))


def transform_photos(accepted: DataFrame, role: str, run_id: str, partition: F.Column) -> DataFrame:
    return accepted.select(
        "record_id", "photo_id", F.lit(role).alias("role"), partition.alias("partition"), "source_path", "content",
        F.col("length").alias("byte_length"), "format", "width", "height", "metadata",
        F.lit(run_id).alias("ingest_run_id"), F.current_timestamp().alias("ingested_at"),
    )


def transform_rejects(rejected: DataFrame, role: str, run_id: str) -> DataFrame:
    reject_id = F.sha2(
        F.concat_ws("|", F.lit(role), F.col("source_path"), F.coalesce("record_id", F.lit("")), F.col("reason"),
                    F.coalesce("photo_id", F.lit(""))),
        256,
    )
    return rejected.select(
        reject_id.alias("reject_id"), F.lit(JOB).alias("job"), F.lit(role).alias("role"), "record_id",
        "source_path", "photo_id", "reason", "detail", F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("rejected_at"),
    ).dropDuplicates(["reject_id"])


def ingest_photos(spark: SparkSession, cfg: Config, input_path: str, role: str | None = None,
                  run_id: str | None = None) -> IngestResult:
    """Ingest ``input_path`` (manifest file or folder) as ``role``; return the counts."""
    role = role or cfg.ingest.role
    if role not in ("gallery", "probe"):
        raise InputError(f"role must be gallery or probe, got {role!r}")
    run_id = run_id or new_run_id(JOB)
    with RunRecorder(spark, cfg, JOB, run_id) as rec:
        rec.read("photos")
        if os.path.isdir(input_path) and not input_path.endswith(".parquet"):
            candidates = read_folder(spark, input_path, cfg.ingest.record_id_pattern)
            home = input_path
            recursive = True
        else:
            candidates = read_manifest(spark, input_path)
            home = input_path.rsplit("/", 1)[0] if "://" in input_path else os.path.dirname(os.path.abspath(input_path))
            recursive = False
        roots = resolve_roots(cfg.ingest.allowed_roots, home, cfg.resolve(cfg.paths.data_dir))
        candidates = transform_path_checks(candidates, roots, cfg.ingest.allowed_schemes).cache()
        input_rows = candidates.count()
        allowed = candidates.filter(F.col("path_reason").isNull())
        folders = [qualify_path(input_path)] if recursive else _parent_dirs(allowed)
        files_meta = list_files(spark, folders, recursive).cache()
        files_content, files_read = read_listed(spark, candidates, files_meta, cfg.ingest.max_file_bytes)
        validated = transform_validate(
            candidates, files_meta, files_content, cfg.ingest.max_file_bytes, cfg.ingest.max_pixels
        )
        checked = transform_batch_duplicates(validated).cache()
        try:
            accepted = checked.filter(F.col("reason").isNull())
            photos = transform_photos(accepted, role, run_id, partition_col(cfg.ingest.partition_column,
                                                                           cfg.ingest.partition_buckets))
            rejected = checked.filter(F.col("reason").isNotNull())
            n_accepted = checked.filter(F.col("reason").isNull()).count()
            n_rejected = rejected.count()
            new_photos = insert_new(spark, cfg, get_spec("photos"), photos)
            new_rejects = insert_new(spark, cfg, get_spec("rejects"), transform_rejects(rejected, role, run_id))
        finally:
            checked.unpersist()
            candidates.unpersist()
        result = IngestResult(run_id, input_rows, new_photos, n_accepted - new_photos, n_rejected, new_rejects)
        rec.counts.update(input_rows=input_rows, new_photos=new_photos, already_present=result.already_present,
                          rejects=n_rejected, new_rejects=new_rejects, files_read=files_read)
        rec.detail.update(input=input_path, role=role, allowed_roots=roots)
        rec.wrote("photos")
        rec.wrote("rejects")
        if input_rows != new_photos + result.already_present + n_rejected:
            raise AccountingError(
                f"rows in {input_rows} != new {new_photos} + present {result.already_present} + rejects {n_rejected}"
            )
        log.info("ingest %s: %d rows in = %d new + %d already present + %d rejects", run_id, input_rows,
                 new_photos, result.already_present, n_rejected)
        return result
