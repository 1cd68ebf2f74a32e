"""Model specs, integrity-checked ONNX loading and a per-process model cache.

A :class:`ModelSpec` pins a model file's sha256 so that a changed or corrupted file is refused before it can
silently change embeddings. The specs come from the one registry, the configuration's ``models.registry``
(:func:`facelink.registry.model_spec` on the driver); paths are relative to a models directory supplied at
run time by the caller, never read from the environment here.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import onnxruntime as ort

logger = logging.getLogger(__name__)

ModelKind = Literal["detector", "recogniser"]
TemplateName = Literal["arcface112", "dlib150"]
Normalisation = Literal["imagenet", "none"]
Colour = Literal["rgb", "bgr"]

#: Output names YuNet produces, one of each per stride (8, 16, 32).
YUNET_STRIDES: tuple[int, ...] = (8, 16, 32)
YUNET_OUTPUTS: tuple[str, ...] = tuple(
    f"{head}_{stride}" for head in ("cls", "obj", "bbox", "kps") for stride in YUNET_STRIDES
)
_YUNET_OUTPUT_WIDTH = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}

_HASH_CHUNK = 1 << 20


class ModelIntegrityError(RuntimeError):
    """A model file's sha256 differs from the digest pinned in the registry."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        super().__init__(f"model file {path} has sha256 {actual}, expected {expected}; refusing to load it")
        self.path = path
        self.expected = expected
        self.actual = actual


class ModelSignatureError(RuntimeError):
    """A model's ONNX inputs or outputs do not match what its spec promises."""


@dataclass(frozen=True)
class ModelSpec:
    """One pinned model file and how to feed it.

    Attributes:
        name: Registry name, e.g. ``"mobilefacenet_128d"``.
        path: File name relative to the models directory.
        sha256: Hex digest the file must have.
        kind: ``"detector"`` or ``"recogniser"``.
        input_size: Network input as (width, height); for a dynamic detector, the default size.
        template: Alignment template a recogniser expects (``"arcface112"``/``"dlib150"``); None for
            detectors.
        normalisation: Pixel normalisation of a recogniser (``"imagenet"``/``"none"``); None for detectors.
        dim: Embedding dimension of a recogniser; None for detectors.
        colour: Channel order the network expects (``"rgb"`` or ``"bgr"``).
    """

    name: str
    path: str
    sha256: str
    kind: ModelKind
    input_size: tuple[int, int]
    template: TemplateName | None
    normalisation: Normalisation | None
    dim: int | None
    colour: Colour

    def __post_init__(self) -> None:
        if self.kind not in ("detector", "recogniser"):
            raise ValueError(
                f"ModelSpec {self.name!r}: kind must be 'detector' or 'recogniser', got {self.kind!r}"
            )
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"ModelSpec {self.name!r}: sha256 must be 64 lowercase hex digits")
        if self.colour not in ("rgb", "bgr"):
            raise ValueError(f"ModelSpec {self.name!r}: colour must be 'rgb' or 'bgr', got {self.colour!r}")
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ValueError(f"ModelSpec {self.name!r}: input_size must be (width, height) > 0")
        if self.kind == "recogniser" and (
            self.template is None or self.normalisation is None or not self.dim
        ):
            raise ValueError(f"ModelSpec {self.name!r}: a recogniser needs template, normalisation and dim")

    @property
    def model_id(self) -> str:
        """Stable identifier recorded next to every output: ``name@<first 12 hex of sha256>``."""
        return f"{self.name}@{self.sha256[:12]}"


def resolve_model(spec: ModelSpec, models_dir: str | Path) -> Path:
    """Return the absolute path of ``spec``'s file under ``models_dir``.

    Raises:
        FileNotFoundError: The file is not there.
    """
    path = Path(models_dir) / spec.path
    if not path.is_file():
        raise FileNotFoundError(f"model {spec.name!r} not found at {path}")
    return path


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_digest(spec: ModelSpec, path: Path) -> None:
    """Raise `ModelIntegrityError` unless ``path`` hashes to ``spec.sha256``."""
    actual = file_sha256(path)
    if actual != spec.sha256:
        raise ModelIntegrityError(path, spec.sha256, actual)


def _dim_ok(actual: Any, expected: int) -> bool:
    """True when an ONNX dimension is symbolic/unknown or equals ``expected``."""
    return not isinstance(actual, int) or actual == expected


def _check_image_input(spec: ModelSpec, shape: Sequence[Any]) -> None:
    width, height = spec.input_size
    if len(shape) != 4:
        raise ModelSignatureError(f"{spec.name}: input rank {len(shape)}, expected 4 (NCHW): {shape}")
    if shape[1] != 3:
        raise ModelSignatureError(f"{spec.name}: input has {shape[1]} channels, expected 3: {shape}")
    if spec.kind == "recogniser" and not (_dim_ok(shape[2], height) and _dim_ok(shape[3], width)):
        raise ModelSignatureError(f"{spec.name}: input {shape} does not take {height}x{width} crops")
    if spec.kind == "detector" and not (_dim_ok(shape[2], height) and _dim_ok(shape[3], width)):
        raise ModelSignatureError(
            f"{spec.name}: fixed input {shape} differs from spec size {spec.input_size}"
        )


def check_signature(spec: ModelSpec, session: ort.InferenceSession) -> None:
    """Check a session's inputs/outputs against ``spec``.

    Detectors must take one [B,3,H,W] input and produce YuNet's twelve ``cls/obj/bbox/kps_<stride>``
    outputs of rank 3; recognisers one [N,3,H,W] input matching ``input_size`` and one [N,dim] output.

    Raises:
        ModelSignatureError: Any mismatch.
    """
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    if len(inputs) != 1:
        raise ModelSignatureError(f"{spec.name}: expected one input, got {[i.name for i in inputs]}")
    _check_image_input(spec, inputs[0].shape)
    if spec.kind == "detector":
        by_name = {o.name: o.shape for o in outputs}
        missing = [name for name in YUNET_OUTPUTS if name not in by_name]
        if missing:
            raise ModelSignatureError(f"{spec.name}: detector outputs missing {missing}")
        for name in YUNET_OUTPUTS:
            shape = by_name[name]
            width = _YUNET_OUTPUT_WIDTH[name.split("_")[0]]
            if len(shape) != 3 or not _dim_ok(shape[2], width):
                raise ModelSignatureError(
                    f"{spec.name}: output {name} has shape {shape}, expected [B,N,{width}]"
                )
        return
    if len(outputs) != 1:
        raise ModelSignatureError(f"{spec.name}: expected one output, got {[o.name for o in outputs]}")
    shape = outputs[0].shape
    assert spec.dim is not None  # guaranteed by ModelSpec.__post_init__ for recognisers
    if len(shape) != 2 or not _dim_ok(shape[1], spec.dim):
        raise ModelSignatureError(f"{spec.name}: output shape {shape}, expected [N,{spec.dim}]")


def load_onnx(spec: ModelSpec, models_dir: str | Path, threads: int = 1) -> ort.InferenceSession:
    """Load a registry model on CPU after checking its digest and signature.

    Args:
        spec: Registry entry.
        models_dir: Directory holding the model files.
        threads: onnxruntime intra-op threads (pin to the Spark task's cores); inter-op is always 1.

    Returns:
        A CPU `onnxruntime.InferenceSession`.

    Raises:
        FileNotFoundError: Missing file.
        ModelIntegrityError: sha256 mismatch.
        ModelSignatureError: Inputs/outputs differ from the spec.
        ValueError: ``threads`` < 1.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    path = resolve_model(spec, models_dir)
    verify_digest(spec, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    check_signature(spec, session)
    logger.info("loaded %s from %s with %d intra-op thread(s)", spec.model_id, path, threads)
    return session


T = TypeVar("T")

_CACHE: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


def cache_key(spec: ModelSpec, threads: int, *extra: object) -> str:
    """Key for `get_cached`: model id, thread count and any extra settings that change the object."""
    parts = [spec.model_id, f"threads={threads}", *(str(e) for e in extra)]
    return "|".join(parts)


def get_cached(key: str, factory: Callable[[], T]) -> T:
    """Return the process-wide object for ``key``, building it with ``factory`` on first use.

    Spark reuses Python workers across tasks, so a model loaded here is loaded once per worker, not once
    per batch (the pattern of pyspark's ``ml/model_cache.py``). Thread-safe; the factory runs at most once
    per key.
    """
    with _CACHE_LOCK:
        if key not in _CACHE:
            logger.debug("model cache miss for %s", key)
            _CACHE[key] = factory()
        return _CACHE[key]


def clear_cache() -> None:
    """Drop every cached object (tests, or a worker that must reload)."""
    with _CACHE_LOCK:
        _CACHE.clear()
