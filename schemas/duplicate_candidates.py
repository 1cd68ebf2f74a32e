"""``duplicate_candidates``: pairs of different records whose faces score above the threshold."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="duplicate_candidates",
    identifying=('pair_id', 'record_id_a', 'photo_id_a', 'record_id_b', 'photo_id_b'),
    comment=(
        "CANDIDATE duplicate enrolments for review, not findings: two different record ids whose primary faces "
        "score above the run's threshold. Side a is the lexicographically smaller (record_id, photo_id)."
    ),
    key=("run_id", "pair_id"),
    schema=T.StructType([
        col("run_id", T.StringType(), False),
        col("pair_id", T.StringType(), False, "sha256 of both sides' (record_id, photo_id)"),
        col("record_id_a", T.StringType(), False),
        col("photo_id_a", T.StringType(), False),
        col("record_id_b", T.StringType(), False),
        col("photo_id_b", T.StringType(), False),
        col("score", T.FloatType(), False),
        col("est_fmr", T.DoubleType(), False, "estimated false-match rate of one comparison at this score"),
        col("est_fpir", T.DoubleType(), False, "estimated chance a non-mate gallery this size scores this high"),
        col("band", T.StringType(), False),
        col("quality_ok_a", T.BooleanType(), True),
        col("quality_ok_b", T.BooleanType(), True),
        col("det_score_a", T.FloatType(), True),
        col("det_score_b", T.FloatType(), True),
        col("model_id", T.StringType(), False),
        col("index_version", T.StringType(), False),
    ]),
)
