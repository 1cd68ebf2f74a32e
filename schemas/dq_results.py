"""``dq_results``: one row per expectation evaluated by a data-quality gate."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="dq_results",
    identifying=('observed',),
    comment="Great Expectations results per gate run and expectation; critical failures stop the pipeline.",
    key=("run_id", "table_name", "expectation"),
    schema=T.StructType([
        col("run_id", T.StringType(), False),
        col("table_name", T.StringType(), False),
        col("table_version", T.LongType(), True),
        col("suite", T.StringType(), False),
        col("expectation", T.StringType(), False, "expectation type and its column/arguments"),
        col("severity", T.StringType(), False, "critical | warning"),
        col("success", T.BooleanType(), False),
        col("observed", T.StringType(), True),
        col("evaluated_at", T.TimestampType(), False),
    ]),
)
