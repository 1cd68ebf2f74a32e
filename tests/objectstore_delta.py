"""Run in a fresh Python process by tests/test_objectstore_spark.py: a session built from the configuration with
``lake.root=s3a://...`` writes, updates and reads a Delta table on the object store, and prints what it saw.

A process of its own because the suite's SparkSession is local and a JVM takes its jars once, at start.
Usage: ``python -m tests.objectstore_delta --set lake.root=s3a://bucket/prefix --set lake.s3.endpoint=...``
(credentials in ``FACELINK_S3_ACCESS_KEY_ID`` / ``FACELINK_S3_SECRET_ACCESS_KEY``).
"""

from __future__ import annotations

import argparse
import json
import sys

from delta.tables import DeltaTable

from facelink.config import load_config
from facelink.lake.fs import LakeFs, join
from facelink.session import build_session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args(argv)
    cfg = load_config("test", args.overrides)
    spark = build_session(cfg)
    path = cfg.table_path("smoke")
    spark.createDataFrame([(i, f"row {i}") for i in range(10)], "id int, name string") \
        .write.format("delta").mode("overwrite").save(path)
    DeltaTable.forPath(spark, path).delete("id >= 8")
    spark.createDataFrame([(10, "row 10")], "id int, name string").write.format("delta").mode("append").save(path)
    rows = sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())
    version = DeltaTable.forPath(spark, path).history(1).collect()[0]["version"]
    lake_fs = LakeFs(cfg.lake.s3)
    log_files = [uri.rsplit("/", 1)[1] for uri in lake_fs.list_files(join(path, "_delta_log"), recursive=False)]
    jars = spark.sparkContext.getConf().get("spark.jars", "")
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    print(json.dumps({"rows": rows, "version": version, "log_files": log_files,
                      "hadoop_aws_jar": "hadoop-aws-" in jars,
                      "endpoint": hadoop.get("fs.s3a.endpoint"), "path_style": hadoop.get("fs.s3a.path.style.access")}))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
