"""``photos``: one row per distinct photo of a record, gallery or probe."""

from pyspark.sql import types as T

from schemas.spec import TableSpec, col

SPEC = TableSpec(
    name="photos",
    identifying=('record_id', 'photo_id', 'source_path'),
    comment="One photo of one record (record_id, photo_id = sha256 of the image bytes). Ingested, not judged.",
    key=("record_id", "photo_id"),
    partition_by=("role", "partition"),
    schema=T.StructType([
        col("record_id", T.StringType(), False, "the archive's record (one person's file) identifier"),
        col("photo_id", T.StringType(), False, "sha256 hex of the image bytes"),
        col("role", T.StringType(), False, "gallery (the archive) or probe (a batch of new applications)"),
        col("partition", T.StringType(), False, "archive partition: a metadata value or a hash bucket"),
        col("source_path", T.StringType(), False, "where the bytes were read from"),
        col("content", T.BinaryType(), False, "the image bytes as received"),
        col("byte_length", T.LongType(), False),
        col("format", T.StringType(), False, "JPEG, PNG, ... from the file header"),
        col("width", T.IntegerType(), False, "pixels, after EXIF orientation"),
        col("height", T.IntegerType(), False, "pixels, after EXIF orientation"),
        col("metadata", T.MapType(T.StringType(), T.StringType()), True, "extra manifest columns"),
        col("ingest_run_id", T.StringType(), False),
        col("ingested_at", T.TimestampType(), False),
    ]),
)
