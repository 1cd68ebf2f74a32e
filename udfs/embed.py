"""Face embeddings from aligned crops, batched on onnxruntime, L2-normalised."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from udfs.align import AlignTemplate, get_template
from udfs.models import ModelSpec, load_onnx

logger = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_NORM_EPS = 1e-12


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation of float [N,D] ``x`` (rows of zeros stay zero), as float32."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, _NORM_EPS)).astype(np.float32)


class FaceEmbedder:
    """A recogniser turning aligned BGR crops into unit-length embeddings.

    Args:
        spec: A recogniser `ModelSpec` (``mobilefacenet_128d`` or ``dlib_resnet34_128d``).
        models_dir: Directory holding the model file.
        threads: onnxruntime intra-op threads.
        batch_size: Most crops per ONNX call.
        flip_tta: Also embed each crop's horizontal mirror, average the two and re-normalise.
    """

    def __init__(
        self,
        spec: ModelSpec,
        models_dir: str | Path,
        threads: int = 1,
        *,
        batch_size: int,
        flip_tta: bool,
    ) -> None:
        if spec.kind != "recogniser" or spec.template is None or spec.dim is None:
            raise ValueError(f"{spec.name} is not a recogniser")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.spec = spec
        self.batch_size = batch_size
        self.flip_tta = flip_tta
        self.template: AlignTemplate = get_template(spec.template)
        if self.template.size != spec.input_size:
            raise ValueError(
                f"{spec.name}: template {self.template.name} size differs from input {spec.input_size}"
            )
        self.dim: int = spec.dim
        self._session = load_onnx(spec, models_dir, threads)
        self._input_name = self._session.get_inputs()[0].name

    @property
    def model_id(self) -> str:
        """The model's registry id."""
        return self.spec.model_id

    def preprocess(self, crops_bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 [N,H,W,3] crops to the network's float32 [N,3,H,W] input."""
        x = crops_bgr[..., ::-1] if self.spec.colour == "rgb" else crops_bgr
        x = x.astype(np.float32)
        if self.spec.normalisation == "imagenet":
            x = (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def _run(self, crops_bgr: np.ndarray) -> np.ndarray:
        outputs = [
            self._session.run(None, {self._input_name: self.preprocess(crops_bgr[i : i + self.batch_size])})[
                0
            ]
            for i in range(0, len(crops_bgr), self.batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32)

    def embed(self, crops_bgr: np.ndarray) -> np.ndarray:
        """Embed aligned crops.

        Args:
            crops_bgr: uint8 [N,H,W,3] BGR crops aligned to ``self.template`` ((W, H) = template size).

        Returns:
            float32 [N,dim], each row of unit L2 norm.

        Raises:
            ValueError: Wrong dtype or shape.
        """
        width, height = self.template.size
        if crops_bgr.dtype != np.uint8 or crops_bgr.ndim != 4 or crops_bgr.shape[1:] != (height, width, 3):
            raise ValueError(
                f"expected uint8 [N,{height},{width},3] crops, got {crops_bgr.dtype} {crops_bgr.shape}"
            )
        if len(crops_bgr) == 0:
            return np.zeros((0, self.dim), np.float32)
        if not self.flip_tta:
            return l2_normalise(self._run(crops_bgr))
        both = self._run(np.concatenate([crops_bgr, crops_bgr[:, :, ::-1]]))
        count = len(crops_bgr)
        return l2_normalise(l2_normalise(both[:count]) + l2_normalise(both[count:]))


#: Name suffix of the embedder that sees a recogniser's mirrored crops (see :class:`MirroredEmbedder`).
MIRROR = "~mirror"


class MirroredEmbedder(FaceEmbedder):
    """A :class:`FaceEmbedder` that embeds the horizontal mirror of each aligned crop.

    The evaluation keeps a member's plain and mirrored embeddings apart, so that one pass yields both its
    plain and its flip TTA variant (``l2(l2(plain) + l2(mirrored))``, what ``flip_tta`` computes).
    """

    def embed(self, crops_bgr: np.ndarray) -> np.ndarray:
        return super().embed(np.ascontiguousarray(crops_bgr[:, :, ::-1]))


def fuse_embeddings(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """One embedding from several recognisers' unit embeddings of the same faces.

    Each member's vectors are scaled by ``sqrt(weight)`` and concatenated, so for weights summing to 1 the
    result has unit norm and the inner product of two fused embeddings is ``sum_i w_i * cos_i``: a weighted
    mean of the members' cosine scores (linear score fusion) that FAISS computes like any other inner product.

    Args:
        vectors: Per member, float32 [N, d_i] unit rows (the same N faces in the same order).
        weights: Per member, a weight > 0; the weights must sum to 1.

    Returns:
        float32 [N, sum d_i], unit rows.

    Raises:
        ValueError: Counts differ, a weight is not positive, or the weights do not sum to 1.
    """
    if len(vectors) != len(weights) or not vectors:
        raise ValueError(f"one weight per member: {len(vectors)} members, {len(weights)} weights")
    if min(weights) <= 0 or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"weights must be > 0 and sum to 1, got {list(weights)}")
    rows = {len(v) for v in vectors}
    if len(rows) != 1:
        raise ValueError(f"members embedded different numbers of faces: {sorted(rows)}")
    return np.concatenate(
        [np.asarray(v, np.float32) * np.float32(np.sqrt(w)) for v, w in zip(vectors, weights, strict=True)], axis=1
    )
