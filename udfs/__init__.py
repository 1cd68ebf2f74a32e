"""Plain-Python/NumPy face model wrappers used by facelink's Spark UDFs.

Nothing in this package imports Spark: each module wraps one stage (decode, detect, align, embed,
quality) over NumPy arrays, and `udfs.pipeline.FacePipeline` chains them over a batch of photo bytes.
The Spark layer builds these objects on the executor (see `udfs.models.get_cached`) from plain values
passed by the driver.
"""
