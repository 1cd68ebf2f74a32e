"""Search: the one seam match and dedup share.

:func:`facelink.search.plan.plan_search` turns (configuration, model id, bands) into a :class:`SearchPlan`
(index version in force, calibration, band thresholds, floor, nprobe per partition, audit detail);
:mod:`facelink.search.udf` searches the index on executors; :mod:`facelink.search.outputs` holds one Spark
transform per output table. :mod:`facelink.search.calibration` and :mod:`facelink.search.fpir` turn scores
into rates; :mod:`facelink.search.scoring` turns rates into bands and estimate columns.
"""
