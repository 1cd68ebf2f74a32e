"""``evaluations``: accuracy figures of evaluation runs, each with what produced it."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="evaluations",
    comment="One figure (metric at an operating point, optionally per group) of one evaluation run.",
    key=("run_id", "protocol", "config_name", "metric", "group_name"),
    schema=T.StructType([
        col("run_id", T.StringType(), False),
        col("protocol", T.StringType(), False, "verification | identification | dedup"),
        col("config_name", T.StringType(), False, "e.g. reference, flip_tta, fusion, default"),
        col("metric", T.StringType(), False, "e.g. accuracy, tar_at_far_1e-3, fnir_at_fpir_0.01"),
        col("group_name", T.StringType(), False, "'all' or a group label"),
        col("value", T.DoubleType(), True),
        col("ci_low", T.DoubleType(), True),
        col("ci_high", T.DoubleType(), True),
        col("threshold", T.DoubleType(), True),
        col("n", T.LongType(), True),
        col("model_id", T.StringType(), False),
        col("index_version", T.StringType(), True),
        col("data_digest", T.StringType(), False),
        col("evaluated_at", T.TimestampType(), False),
    ]),
)
