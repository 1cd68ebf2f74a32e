"""Accuracy evaluation of the face pipeline (issue 8) and the techniques that raise 1:N accuracy (issue 9).

Modules, in the order the evaluation job uses them:

- :mod:`facelink.evaluation.dataset`: the labelled photo set (manifest with identities and optional group
  labels), its ingest manifest and the data digests recorded next to every figure.
- :mod:`facelink.evaluation.embeddings`: one cached extraction pass per detector size over the set's
  photos in the lake (every recogniser, plain and mirrored), loaded as NumPy matrices per variant; the
  cross-check against the real ``faces`` table; the time cost per photo.
- :mod:`facelink.evaluation.techniques`: a scoring configuration (recognisers, flip TTA, detector size,
  record templates, fusion, cohort normalisation) and the score matrices it gives.
- :mod:`facelink.evaluation.protocols`: 1:1 verification, NIST-style 1:N identification, planted-duplicate
  recall, per-group rates and the calibration hold-out check, as pure NumPy over score matrices.
- :mod:`facelink.evaluation.report`: ``evaluations`` rows, the JSON/Markdown report, plots and the
  side-by-side thumbnails of the top false dedup candidates.
"""

from facelink.errors import FaceLinkError


class EvaluationError(FaceLinkError):
    """The evaluation cannot produce trustworthy figures (stale ``faces`` rows, an unusable protocol)."""

    exit_code = 8
