"""``reviews``: human decisions on candidate pairs or clusters (never edits of the candidates)."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="reviews",
    identifying=('subject_id', 'note'),
    comment="One decision by one named reviewer. A pair is confirmed only when two different reviewers agree.",
    key=("review_id",),
    schema=T.StructType([
        col("review_id", T.StringType(), False),
        col("subject_type", T.StringType(), False, "pair | cluster | match"),
        col("subject_id", T.StringType(), False, "pair_id, cluster_id, or run_id/probe_photo_id/rank"),
        col("source_run_id", T.StringType(), False),
        col("record_ids", T.ArrayType(T.StringType()), False),
        col("reviewer", T.StringType(), False),
        col("decision", T.StringType(), False, "same_person | different_people | inconclusive"),
        col("note", T.StringType(), True),
        col("reviewed_at", T.TimestampType(), False),
    ]),
)
