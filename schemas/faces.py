"""``faces``: detected faces with quality and embedding, plus one status row per photo without a face."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

F32 = T.FloatType()

SPEC = TableSpec(
    name="faces",
    identifying=('record_id', 'photo_id', 'error'),
    comment=(
        "One row per detected face of a photo for one recogniser (model_id); a photo where no face was found "
        "or that could not be processed has one row with face_index -1 and the status saying why."
    ),
    key=("record_id", "photo_id", "model_id", "face_index"),
    partition_by=("role",),
    schema=T.StructType([
        col("record_id", T.StringType(), False),
        col("photo_id", T.StringType(), False),
        col("role", T.StringType(), False),
        col("partition", T.StringType(), False),
        col("model_id", T.StringType(), False, "recogniser name@sha256 prefix; never compare across model ids"),
        col("face_index", T.IntegerType(), False, "0.. by detector score; -1 on a status row"),
        col("status", T.StringType(), False, "ok | no_face | decode_error | error"),
        col("error", T.StringType(), True),
        col("n_faces", T.IntegerType(), False, "faces found in the photo"),
        col("is_primary", T.BooleanType(), False, "the photo's main face (the one that represents the record)"),
        col("box", T.ArrayType(F32), True, "x, y, w, h in photo pixels"),
        col("landmarks", T.ArrayType(F32), True, "5 points (x, y): eyes, nose, mouth corners"),
        col("det_score", F32, True),
        col("face_width", F32, True, "pixels"),
        col("inter_eye_px", F32, True),
        col("sharpness", F32, True, "variance of the Laplacian of the aligned crop"),
        col("brightness", F32, True, "mean grey level of the aligned crop"),
        col("contrast", F32, True, "std of grey level of the aligned crop"),
        col("roll_deg", F32, True),
        col("yaw", F32, True, "nose offset from the eye midpoint / inter-eye distance"),
        col("quality_ok", T.BooleanType(), False),
        col("quality_reasons", T.ArrayType(T.StringType()), True),
        col("embedding", T.ArrayType(F32), True, "L2-normalised; compare by inner product"),
        col("extract_run_id", T.StringType(), False),
        col("extracted_at", T.TimestampType(), False),
    ]),
)
