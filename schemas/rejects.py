"""``rejects``: input rows that could not become photos, each with a reason code and detail."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

REASONS = (
    "missing_record_id",
    "missing_file",
    "empty_file",
    "file_too_large",
    "not_an_image",
    "corrupt_image",
    "too_many_pixels",
    "duplicate_in_batch",
    "conflicting_duplicate",
)

SPEC = TableSpec(
    name="rejects",
    identifying=('reject_id', 'record_id', 'source_path', 'photo_id', 'detail'),
    comment="An input row that did not become a photo, and why. Nothing is dropped silently.",
    key=("reject_id",),
    schema=T.StructType([
        col("reject_id", T.StringType(), False, "sha256 of role, source path, record id, reason and photo id"),
        col("job", T.StringType(), False),
        col("role", T.StringType(), False),
        col("record_id", T.StringType(), True),
        col("source_path", T.StringType(), True),
        col("photo_id", T.StringType(), True, "sha256 of the bytes when they could be read"),
        col("reason", T.StringType(), False, "one of: " + ", ".join(REASONS)),
        col("detail", T.StringType(), True),
        col("run_id", T.StringType(), False, "the run that first rejected it"),
        col("rejected_at", T.TimestampType(), False),
    ]),
)
