"""``matches``: ranked candidates of probe-vs-gallery runs, for trained human review."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="matches",
    identifying=('probe_record_id', 'probe_photo_id', 'candidate_record_id', 'candidate_photo_id'),
    comment=(
        "CANDIDATES, NOT IDENTIFICATIONS: for each probe photo, up to k gallery faces ranked by score, with "
        "the estimated false-positive identification rate at that score. A reviewer decides."
    ),
    key=("run_id", "probe_photo_id", "rank"),
    schema=T.StructType([
        col("run_id", T.StringType(), False),
        col("probe_record_id", T.StringType(), False),
        col("probe_photo_id", T.StringType(), False),
        col("probe_face_index", T.IntegerType(), False),
        col("candidate_record_id", T.StringType(), False),
        col("candidate_photo_id", T.StringType(), False),
        col("candidate_face_index", T.IntegerType(), False),
        col("rank", T.IntegerType(), False, "1 = highest score"),
        col("score", T.FloatType(), False, "cosine similarity in [-1, 1]"),
        col("est_fpir", T.DoubleType(), False, "estimated false-positive identification rate at this score"),
        col("band", T.StringType(), False, "strong | possible (from configured FPIR levels)"),
        col("probe_quality_ok", T.BooleanType(), True),
        col("candidate_quality_ok", T.BooleanType(), True),
        col("probe_det_score", T.FloatType(), True),
        col("candidate_det_score", T.FloatType(), True),
        col("model_id", T.StringType(), False),
        col("index_version", T.StringType(), False),
        col("gallery_size", T.LongType(), False),
        col("threshold_score", T.FloatType(), False, "the lowest band's score threshold resolved for this run"),
    ]),
)
