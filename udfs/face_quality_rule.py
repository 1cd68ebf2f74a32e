"""The face quality rule: thresholds a face must meet, with the reasons it fails.

Plain Python (no NumPy, no OpenCV): the configuration's ``quality`` section is this type, and the Airflow DAG
loads the configuration without the numeric stack. The measures it checks come from
:func:`udfs.face_quality.measure_quality`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from udfs.face_quality import FaceQuality


@dataclass(frozen=True)
class QualityRule:
    """Thresholds a face must meet; `evaluate` names each one it fails.

    The defaults are set from 1,000 random lfw_dev photos (250x250 news portraits; primary face, YuNet at
    320) so that ordinary portraits pass and blurred, dark, turned, tiny or crowded ones do not. Measured
    there (percentiles 0.5 / 50 / 99.5 unless noted):

    - det_score 0.907 / 0.941 / 0.955 (minimum 0.895) -> min 0.8
    - inter_eye_px 24.9 / 43.5 / 54.6 -> min 24 (ISO/IEC 19794-5 asks 60 px for ID photos: see
      `strict_id_capture`; LFW's 250 px crops cannot meet it)
    - sharpness 34 / 150 / 637 -> min 30
    - brightness 60 / 116 / 176 (range 47-186) -> 45..210
    - contrast 27 / 50 / 79 (minimum 22) -> min 20
    - abs(roll_deg) median 2.0, 99.5th 10.7 (LFW is pre-aligned) -> max 25 (alignment undoes roll)
    - abs(yaw_proxy) median 0.10, 95th 0.31, 98th 0.40, 99th 0.53 -> max 0.45
    - n_faces 1 in 83%, <= 2 in 95%, <= 3 in 99%, max 5 (bystanders in news photos) -> max 3

    On all 6,922 lfw_dev photos (primary face) 97.5% pass these defaults; failures are mostly yaw (85),
    too many faces (47) and blur (44). ``max_faces=1`` would pass only 82% (1,142 photos show bystanders).
    """

    min_det_score: float = 0.8
    min_inter_eye_px: float = 24.0
    min_sharpness: float = 30.0
    min_brightness: float = 45.0
    max_brightness: float = 210.0
    min_contrast: float = 20.0
    max_abs_roll_deg: float = 25.0
    max_abs_yaw: float = 0.45
    max_faces: int | None = 3

    @classmethod
    def strict_id_capture(cls) -> QualityRule:
        """A stricter profile for controlled ID enrolment: one face, 60 px between the eyes, near-frontal."""
        return cls(min_inter_eye_px=60.0, max_abs_roll_deg=8.0, max_abs_yaw=0.25, max_faces=1)

    def evaluate(self, q: FaceQuality) -> tuple[bool, list[str]]:
        """Check ``q`` against the thresholds.

        Returns:
            (ok, reasons): ok is True when reasons is empty; reasons are stable codes such as
            ``"inter_eye_below_min"``, ``"too_many_faces"``.
        """
        checks = [
            (q.det_score < self.min_det_score, "det_score_below_min"),
            (q.inter_eye_px < self.min_inter_eye_px, "inter_eye_below_min"),
            (q.sharpness < self.min_sharpness, "sharpness_below_min"),
            (q.brightness < self.min_brightness, "brightness_below_min"),
            (q.brightness > self.max_brightness, "brightness_above_max"),
            (q.contrast < self.min_contrast, "contrast_below_min"),
            (abs(q.roll_deg) > self.max_abs_roll_deg, "roll_above_max"),
            (abs(q.yaw_proxy) > self.max_abs_yaw, "yaw_above_max"),
            (self.max_faces is not None and q.n_faces > self.max_faces, "too_many_faces"),
        ]
        reasons = [reason for failed, reason in checks if failed]
        return not reasons, reasons
