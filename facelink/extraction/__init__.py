"""Extraction: photos to ``faces`` rows on Spark, the one place that builds the face pipeline of a job.

:mod:`facelink.extraction.settings` holds the plain values the driver hands to the executors and builds the
pipeline from them; :mod:`facelink.extraction.udf` is the one ``mapInPandas`` function (``faces`` rows, or one
primary-face row per photo for the evaluation's variants); :mod:`facelink.extraction.run` is the incremental
extraction into ``faces`` that ``jobs.extract``, ``jobs.evaluate`` and the benchmarks call.
"""
