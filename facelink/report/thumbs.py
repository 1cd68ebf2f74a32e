"""Small JPEG thumbnails of archive photos for the review report, made with OpenCV on the executors.

Photos are decoded with the pipeline's own safe decoder (:func:`udfs.decode.decode_image`, EXIF orientation
applied as in extraction, so face boxes in photo pixels line up), shrunk so that the longer side is at most
``max_side`` pixels and re-encoded as JPEG. The report never carries a full-size photo. A photo that cannot
be decoded yields a row with an error message instead of a thumbnail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

#: Largest thumbnail side accepted: beyond this a "thumbnail" would be a full-size photo for most archives.
MAX_THUMB_SIDE = 320

THUMB_SCHEMA = T.StructType([
    T.StructField("photo_id", T.StringType(), False),
    T.StructField("thumb", T.BinaryType(), True),
    T.StructField("photo_width", T.IntegerType(), True),
    T.StructField("photo_height", T.IntegerType(), True),
    T.StructField("error", T.StringType(), True),
])


def check_side(max_side: int) -> int:
    """Return ``max_side`` if it is a sensible thumbnail size, else raise ``ValueError``."""
    if not 16 <= max_side <= MAX_THUMB_SIDE:
        raise ValueError(f"thumbnail side must be between 16 and {MAX_THUMB_SIDE} pixels, got {max_side}")
    return max_side


def thumbnail_jpeg(content: bytes, max_side: int, quality: int = 85,
                   max_pixels: int = 40_000_000) -> tuple[bytes, int, int]:
    """JPEG bytes of ``content`` shrunk to at most ``max_side`` pixels on its longer side.

    Args:
        content: the photo's bytes as stored in ``photos.content``.
        max_side: longest side of the thumbnail in pixels (a smaller photo is not enlarged).
        quality: JPEG quality 1..100.
        max_pixels: largest photo decoded (the ingest limit).

    Returns:
        ``(jpeg, width, height)``: the thumbnail and the decoded photo's size (after EXIF orientation).

    Raises:
        udfs.decode.ImageDecodeError: the bytes are not a decodable photo.
        ValueError: OpenCV could not encode the thumbnail.
    """
    import cv2

    from udfs.decode import decode_image

    image = decode_image(content, max_pixels)
    scale = min(1.0, max_side / max(image.width, image.height))
    small = image.bgr
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        small = cv2.resize(image.bgr, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the thumbnail as JPEG")
    return buf.tobytes(), image.width, image.height


def make_thumbnail_fn(max_side: int, quality: int = 85, max_pixels: int = 40_000_000
                      ) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A ``mapInPandas`` function: ``(photo_id, content)`` batches -> :data:`THUMB_SCHEMA` batches."""
    check_side(max_side)

    def thumbnails(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import cv2

        cv2.setNumThreads(1)  # one Spark task, one core
        for batch in batches:
            rows: list[tuple[str, bytes | None, int | None, int | None, str | None]] = []
            for photo_id, content in zip(batch["photo_id"], batch["content"], strict=True):
                try:
                    jpeg, width, height = thumbnail_jpeg(bytes(content), max_side, quality, max_pixels)
                    rows.append((photo_id, jpeg, width, height, None))
                except Exception as exc:  # a bad photo is a row with its error, never a failed task
                    rows.append((photo_id, None, None, None, f"{type(exc).__name__}: {exc}"))
            yield pd.DataFrame(rows, columns=THUMB_SCHEMA.fieldNames())

    return thumbnails


def transform_thumbnails(photos: DataFrame, max_side: int, quality: int = 85,
                         max_pixels: int = 40_000_000) -> DataFrame:
    """``photos`` (``photo_id``, ``content``) -> one :data:`THUMB_SCHEMA` row per row of ``photos``."""
    return photos.select("photo_id", "content").mapInPandas(
        make_thumbnail_fn(max_side, quality, max_pixels), THUMB_SCHEMA)
