"""``index_manifest``: published FAISS index versions, one row per partition of a version."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="index_manifest",
    comment=(
        "Every partition index of a version is appended in one Delta commit, so a reader sees a whole version "
        "or none. The newest version for a model_id is the one in force."
    ),
    key=("index_version", "partition"),
    schema=T.StructType([
        col("index_version", T.StringType(), False),
        col("model_id", T.StringType(), False),
        col("partition", T.StringType(), False),
        col("kind", T.StringType(), False, "flat | ivf_flat | ivf_fastscan | ivf_pq"),
        col("params", T.StringType(), False, "JSON of the index parameters"),
        col("vector_count", T.LongType(), False),
        col("index_path", T.StringType(), False),
        col("index_sha256", T.StringType(), False),
        col("ids_path", T.StringType(), False,
            ".npy int64: position -> face_id (63-bit xxhash64 of photo_id, face_index, model_id)"),
        col("ids_sha256", T.StringType(), False),
        col("nprobe", T.IntegerType(), False),
        col("recall_at_10", T.DoubleType(), True, "against exact search on held-back queries"),
        col("mode", T.StringType(), False, "full | incremental | unchanged (files of base_version reused)"),
        col("base_version", T.StringType(), True, "the version an incremental build added to"),
        col("built_at", T.TimestampType(), False),
        col("build_run_id", T.StringType(), False),
    ]),
)
