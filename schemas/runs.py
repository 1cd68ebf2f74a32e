"""``runs``: one row per job run: what ran, on what, with which configuration, and the counts."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="runs",
    identifying=('error',),
    comment="One row per job run (operational record; the accountable record is `audit`).",
    key=("run_id", "job", "started_at"),
    schema=T.StructType([
        col("run_id", T.StringType(), False),
        col("job", T.StringType(), False),
        col("env", T.StringType(), False),
        col("started_at", T.TimestampType(), False),
        col("ended_at", T.TimestampType(), False),
        col("status", T.StringType(), False, "succeeded | failed | refused"),
        col("error", T.StringType(), True),
        col("counts", T.MapType(T.StringType(), T.LongType()), True),
        col("config_hash", T.StringType(), False, "sha256 of the resolved configuration, secrets masked"),
        col("tables_read", T.MapType(T.StringType(), T.LongType()), True, "table -> Delta version read"),
        col("tables_written", T.MapType(T.StringType(), T.LongType()), True, "table -> Delta version written"),
    ]),
)
