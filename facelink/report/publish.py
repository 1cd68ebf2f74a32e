"""Publishing a report folder under the lake: built in a local staging folder, then moved or copied in whole.

A local lake gets the folder renamed into place (a rerun with the same run id replaces the previous folder
in one swap, so a reader never sees half a report). A lake on a Hadoop-compatible filesystem (``s3a://``,
``abfss://``, ``hdfs://``) gets it copied with the Hadoop ``FileSystem`` API of the running SparkSession.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path

from pyspark.sql import SparkSession

from facelink import identifiers

log = logging.getLogger(__name__)


def report_dir(lake_root: str, run_id: str) -> str:
    """Where the report of ``run_id`` lives: ``<lake.root>/reports/<run_id>``."""
    return f"{lake_root.rstrip('/')}/reports/{identifiers.run_id(run_id)}"


def local_path(uri: str) -> Path | None:
    """The local path of ``uri`` (a plain path or ``file:``), or None for a remote filesystem."""
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if uri.startswith("file:"):
        return Path(uri[len("file:"):])
    return None if "://" in uri else Path(uri)


def publish_folder(spark: SparkSession, staging: Path, dest: str) -> str:
    """Put the staging folder's contents at ``dest``, replacing what was there; return ``dest``."""
    target = local_path(dest)
    if target is None:
        _copy_to_hadoop(spark, staging, dest)
        return dest
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    shutil.move(str(staging), str(target))
    if old.exists():
        shutil.rmtree(old)
    log.info("report published at %s", target)
    return str(target)


def _copy_to_hadoop(spark: SparkSession, staging: Path, dest: str) -> None:
    jvm = spark.sparkContext._jvm
    jsc = spark.sparkContext._jsc
    if jvm is None or jsc is None:
        raise RuntimeError("the SparkSession has no JVM gateway: cannot copy the report to " + dest)
    conf = jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(dest)
    fs = path.getFileSystem(conf)
    if fs.exists(path):
        fs.delete(path, True)
    fs.copyFromLocalFile(False, True, jvm.org.apache.hadoop.fs.Path(staging.resolve().as_uri()), path)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("report copied to %s", dest)
