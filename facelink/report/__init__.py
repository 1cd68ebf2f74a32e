"""The review report: counts, data quality, score histograms and candidate pairs side by side, for reviewers.

``jobs.report`` reads the lake (:mod:`facelink.report.data`, :mod:`facelink.report.candidates`), makes
thumbnails on the executors (:mod:`facelink.report.thumbs`) and charts (:mod:`facelink.report.charts`),
renders one HTML page (:mod:`facelink.report.html`) and publishes the folder under the lake
(:mod:`facelink.report.publish`). :mod:`facelink.report.notebook` opens the lake for the analysts' notebooks.
Everything it shows is a candidate for trained human review, never an identification.
"""
