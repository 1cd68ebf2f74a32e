"""Settings of an evaluation run: the defaults below, or those a caller passes (``jobs.evaluate``'s ``run``).

They are not part of the pipeline's configuration (``conf/``): an evaluation states what it measured in its
report, and production jobs never read them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class EvaluationSettings:
    """What an evaluation measures and how.

    Attributes:
        configs: Configurations compared in one run (see :func:`techniques.evaluation_configs`).
        alt_detect_sizes: Detector sizes tried against the reference's 320.
        fpir_targets: 1:N operating points (NIST FRTE reports 0.01 and 0.003).
        far_targets: 1:1 operating points for TAR at FAR.
        calibration_fmr_targets: FMRs at which calibration is checked on held-back folds.
        ranks: Rank-R miss rates reported.
        n_boot: Bootstrap replicates per confidence interval.
        seed: Seed of every bootstrap and sample drawn by the evaluation.
        folds: Identity folds generated when no pairs file is given.
        gallery_sizes: Gallery sizes (below the full one) of the FNIR-vs-gallery-size curve.
        size_curve_configs: Configurations the gallery-size curve is drawn for.
        calibration_nonmates: Most non-mate comparisons a per-recogniser calibration is fitted on.
        timing_photos: Photos timed per extraction variant for the cost per photo.
        false_candidates: Top different-identity dedup pairs kept (and drawn) per configuration.
        false_candidate_configs: Configurations whose false candidates are drawn as thumbnails.
        group_fmr: FMR at which per-group rates are read.
        sample_seed: Seed of the 1:N archive built by :mod:`facelink.sample`.
        gallery_nonmated: Also count as non-mated searches the gallery records whose person has no other
            gallery record, each searching the rest of the gallery (leave-one-out). With the protocol's 250
            unmated probes alone, FPIR 0.01 rests on the 3rd-highest top score and its interval is too wide to
            tell configurations apart; with these the non-mated set has about 3,300 searches.
    """

    configs: tuple[str, ...] = ("reference", "flip_tta", "templates", "fusion", "fusion_fmr", "cohort_norm",
                                "detect_size", "sface_mix", "default", "default_all_faces",
                                "default_quality_only", "all")
    alt_detect_sizes: tuple[int, ...] = (480, 640)
    fpir_targets: tuple[float, ...] = (0.01, 0.003)
    far_targets: tuple[float, ...] = (0.01, 0.001)
    calibration_fmr_targets: tuple[float, ...] = (0.01, 0.001)
    ranks: tuple[int, ...] = (1, 10)
    n_boot: int = 1000
    seed: int = 0
    folds: int = 5
    gallery_sizes: tuple[int, ...] = (500, 1000, 2000)
    size_curve_configs: tuple[str, ...] = ("reference", "default")
    calibration_nonmates: int = 1_000_000
    timing_photos: int = 100
    false_candidates: int = 12
    false_candidate_configs: tuple[str, ...] = ("reference", "default")
    group_fmr: float = 0.01
    sample_seed: int = 7
    gallery_nonmated: bool = True

    def __post_init__(self) -> None:
        if not self.fpir_targets or not self.far_targets:
            raise ValueError("evaluation.fpir_targets and evaluation.far_targets must not be empty")
        for name in ("fpir_targets", "far_targets", "calibration_fmr_targets"):
            if any(not 0 < t < 1 for t in getattr(self, name)):
                raise ValueError(f"evaluation.{name}: rates must be in (0, 1)")
        if self.n_boot < 1 or self.folds < 2 or self.timing_photos < 0:
            raise ValueError("evaluation.n_boot must be >= 1, folds >= 2 and timing_photos >= 0")

    def with_values(self, **values: Any) -> EvaluationSettings:
        """A copy with some fields replaced (sequences become tuples)."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update({k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        return EvaluationSettings(**current)

