"""The data-quality gate (``jobs.quality``): Great Expectations suites written in code per table
(:mod:`facelink.dq.suites`), run on Spark DataFrames with results in ``dq_results`` (:mod:`facelink.dq.gate`).
Not to be confused with face image quality (``udfs.face_quality``)."""
