"""The one place a SparkSession is built: Delta Lake (and s3a) from local jars, Arrow settings, local defaults."""

from __future__ import annotations

import glob
import logging
import os
import sys
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession

from facelink.config import Config, LakeS3Conf
from facelink.errors import SetupError

log = logging.getLogger(__name__)

DELTA_JAR_GLOBS = ("delta-spark_*.jar", "delta-storage-*.jar")
#: hadoop-aws and the AWS SDK modules it needs, fetched by ``make setup`` (scripts/s3a-jars.pom.xml).
S3A_JARS_SUBDIR = "s3a"
#: ``lake.s3.credentials`` -> the s3a credentials provider (``static+token``: static keys with a session token).
S3A_PROVIDERS = {
    "default": "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
    "static": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    "static+token": "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider",
    "anonymous": "org.apache.hadoop.fs.s3a.AnonymousAWSCredentialsProvider",
}


def delta_jars(jars_dir: str) -> list[str]:
    """Local paths of the Delta Lake jars fetched by ``make setup``.

    Raises:
        SetupError: the folder lacks the delta-spark or delta-storage jar.
    """
    found: list[str] = []
    for pattern in DELTA_JAR_GLOBS:
        matches = sorted(glob.glob(str(Path(jars_dir) / pattern)))
        if not matches:
            raise SetupError(f"no {pattern} in {jars_dir}: run `make setup` (it fetches the Delta jars with Maven)")
        found.append(matches[-1])
    return found


def uses_s3a(cfg: Config) -> bool:
    """Whether the session must reach ``s3a://``: the lake is there, or ingest may read photos from there."""
    return cfg.lake_root.startswith("s3a://") or "s3a" in cfg.ingest.allowed_schemes


def s3a_jars(jars_dir: str) -> list[str]:
    """Local paths of the s3a jars (``<jars_dir>/s3a/*.jar``) fetched by ``make setup``.

    They sit in their own folder and join the session only when :func:`uses_s3a`: 37 jars (13 MB) that a local
    lake never loads.

    Raises:
        SetupError: the folder holds no hadoop-aws jar.
    """
    folder = Path(jars_dir) / S3A_JARS_SUBDIR
    found = sorted(glob.glob(str(folder / "*.jar")))
    if not any(Path(jar).name.startswith("hadoop-aws-") for jar in found):
        raise SetupError(f"no hadoop-aws jar in {folder}: run `make setup` (it fetches the s3a jars with Maven)")
    return found


def s3a_hadoop_settings(s3: LakeS3Conf) -> dict[str, str]:
    """The ``spark.hadoop.fs.s3a.*`` settings that make Spark reach the store as ``facelink.lake.fs.LakeFs`` does."""
    prefix = "spark.hadoop.fs.s3a."
    settings = {
        "endpoint.region": s3.region,
        "path.style.access": str(s3.path_style_access).lower(),
        "connection.ssl.enabled": str(s3.ssl).lower(),
    }
    if s3.endpoint:
        settings["endpoint"] = f"{'https' if s3.ssl else 'http'}://{s3.endpoint}"
    if s3.credentials == "static":
        settings["access.key"] = s3.access_key_id
        settings["secret.key"] = s3.secret_access_key
        if s3.session_token:
            settings["session.token"] = s3.session_token
        settings["aws.credentials.provider"] = S3A_PROVIDERS["static+token" if s3.session_token else "static"]
    else:
        settings["aws.credentials.provider"] = S3A_PROVIDERS[s3.credentials]
    return {prefix + key: value for key, value in settings.items()}


def session_settings(cfg: Config) -> dict[str, str]:
    """Every spark.* setting facelink applies, before ``spark.extra`` overrides."""
    settings = {
        "spark.app.name": cfg.spark.app_name,
        "spark.driver.memory": cfg.spark.driver_memory,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(cfg.spark.arrow_batch_size),
        # pyspark 4.2.0 can hang in Arrow-optimised plain @udf over a Parquet scan; this avoids it.
        "spark.sql.execution.arrow.pythonUDF.columnarInput.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # Delta rebuilds a table version's state (its list of files) with this many tasks (Delta's default: 50).
        # Each task costs 50-700 ms of CPU whatever its share of the log: with 8 tasks, extract's first read of
        # the new versions of photos and faces took 2.7-3.4 s, with 1 or 2 tasks 1.2-1.3 s (measured).
        "spark.databricks.delta.snapshotPartitions": str(cfg.spark.delta_snapshot_partitions),
        "spark.databricks.delta.retentionDurationCheck.enabled": "true",
        # Delta's VACUUM lists files with this many tasks; Spark's default of 10000 makes every vacuum of a
        # small table launch 10000 tasks (minutes on a small machine, and on a small cluster).
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(cfg.spark.shuffle_partitions),
        "spark.python.worker.reuse": "true",
        # Tables are read and written by path, never through the metastore; Spark still creates its default
        # database folder, which would otherwise be ./spark-warehouse in the working directory.
        "spark.sql.warehouse.dir": str(Path(tempfile.gettempdir()) / "facelink-spark-warehouse"),
        # Python workers run the driver's interpreter (the project virtualenv) unless a cluster says otherwise.
        "spark.pyspark.python": sys.executable,
    }
    if uses_s3a(cfg):
        settings.update(s3a_hadoop_settings(cfg.lake.s3))
    if not cfg.spark.master:
        # spark-submit decides the master, and the application's name too (--name, as each Airflow task sets it).
        del settings["spark.app.name"]
    settings.update(cfg.spark.extra)
    return settings


def build_session(cfg: Config) -> SparkSession:
    """Build (or return the active) SparkSession for ``cfg``, configured for Delta Lake.

    The Delta jars are given as local paths from ``paths.jars_dir``: nothing is downloaded at run time.
    On a cluster, ``spark.master`` may be empty so that ``spark-submit --master`` decides.
    """
    jars_dir = cfg.resolve(cfg.paths.jars_dir)
    jars = delta_jars(jars_dir) + (s3a_jars(jars_dir) if uses_s3a(cfg) else [])
    # pyspark takes the Python UDF workers' interpreter from this variable (SparkContext.pythonExec), not
    # from spark.pyspark.python: without it local workers start the system python3, which lacks our packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # noqa: TID251 - writes, does not read, config
    builder = SparkSession.builder
    if cfg.spark.master:
        builder = builder.master(cfg.spark.master)
    builder = builder.config("spark.jars", ",".join(jars))
    for key, value in session_settings(cfg).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark session %s (%s) with %s", spark.version, spark.sparkContext.master,
             ", ".join(Path(jar).name for jar in jars))
    return spark
