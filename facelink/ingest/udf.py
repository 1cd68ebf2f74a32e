"""The ingest UDF: each listed file's bytes hashed, probed and fully decoded on executors (``udfs.decode``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark.sql import types as T

#: What the UDF returns: one row per file, its facts or a reject reason.
VALIDATED_SCHEMA = T.StructType([
    T.StructField("row_no", T.LongType()),
    T.StructField("photo_id", T.StringType()),
    T.StructField("format", T.StringType()),
    T.StructField("width", T.IntegerType()),
    T.StructField("height", T.IntegerType()),
    T.StructField("reason", T.StringType()),
    T.StructField("detail", T.StringType()),
    T.StructField("content", T.BinaryType()),
])


def make_validate_fn(max_pixels: int) -> object:
    """Factory of the ``mapInPandas`` function that hashes, probes and fully decodes each file's bytes."""

    def validate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from udfs.decode import ImageDecodeError, decode_image

        for batch in batches:
            out: list[tuple[Any, ...]] = []
            for row_no, content in zip(batch["row_no"], batch["content"], strict=True):
                data = bytes(content) if content is not None else b""
                photo_id = hashlib.sha256(data).hexdigest() if data else None
                try:
                    img = decode_image(data, max_pixels)
                    out.append((row_no, photo_id, img.format, img.width, img.height, None, None, data))
                except ImageDecodeError as exc:
                    out.append((row_no, photo_id, None, None, None, exc.code, exc.detail, None))
            yield pd.DataFrame(out, columns=VALIDATED_SCHEMA.fieldNames())

    return validate
