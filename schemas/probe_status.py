"""``probe_status``: every probe photo of a run and what became of it."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="probe_status",
    identifying=('probe_record_id', 'probe_photo_id', 'reason'),
    comment="One row per probe photo per run: searched (with how many candidates), or why it was not.",
    key=("run_id", "probe_photo_id"),
    schema=T.StructType([
        col("run_id", T.StringType(), False),
        col("probe_record_id", T.StringType(), False),
        col("probe_photo_id", T.StringType(), False),
        col("status", T.StringType(), False, "searched | no_face | not_extracted | decode_error | error"),
        col("reason", T.StringType(), True),
        col("n_candidates", T.IntegerType(), False),
        col("top_score", T.FloatType(), True),
        col("top_band", T.StringType(), True),
    ]),
)
