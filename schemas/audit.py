"""``audit``: append-only accountability record, one row per job run of any kind (refusals too)."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="audit",
    identifying=('detail',),
    comment="Who ran what, for what purpose, under what authority, on which data and model. Append-only.",
    key=("audit_id",),
    append_only=True,
    properties={"delta.appendOnly": "true"},
    schema=T.StructType([
        col("audit_id", T.StringType(), False, "unique per attempt: <run id>/<12 random hex digits>"),
        col("run_id", T.StringType(), False),
        col("job", T.StringType(), False),
        col("operator", T.StringType(), True),
        col("purpose", T.StringType(), True),
        col("authority", T.StringType(), True, "legal authority or case reference"),
        col("inputs", T.MapType(T.StringType(), T.LongType()), True, "table -> Delta version read"),
        col("outputs", T.MapType(T.StringType(), T.LongType()), True, "table -> Delta version written"),
        col("model_id", T.StringType(), True),
        col("index_version", T.StringType(), True),
        col("config_hash", T.StringType(), False),
        col("counts", T.MapType(T.StringType(), T.LongType()), True),
        col("detail", T.StringType(), True, "e.g. the resolved score threshold, the erased records"),
        col("started_at", T.TimestampType(), False),
        col("ended_at", T.TimestampType(), False),
        col("outcome", T.StringType(), False, "succeeded | failed | refused"),
    ]),
)
