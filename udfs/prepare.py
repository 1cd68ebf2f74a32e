"""Deterministic preparation of an upstream ONNX file into the file a registry entry runs.

Some upstream models cannot be run as shipped, or run slowly: OpenCV Zoo's SFace
(``face_recognition_sface_2021dec_int8bq.onnx``) declares its original float weight names as graph inputs
that no node reads (onnxruntime then demands them as feeds), keeps its weights int8 behind opset-21
block-wise ``DequantizeLinear`` nodes that onnxruntime re-runs on every call, and fixes the batch at 1.
The recipe :data:`FOLD_BLOCK_DEQUANTIZE` rewrites such a file with NumPy and the ``onnx`` package only (no
optimiser whose output could change with its version), so the same source bytes always give the same
prepared bytes and a registry can pin both digests:

1. every ``DequantizeLinear`` whose inputs are all initializers becomes a float32 initializer holding
   ``(x - zero_point) * scale``, block-wise along ``axis`` when ``block_size`` is set (ONNX's definition);
   initializers no node reads any more are dropped;
2. the graph's inputs are reduced to those a node reads and no initializer backs (the image);
3. the first dimension of the graph's inputs and outputs becomes the symbolic ``N``; intermediate shape
   annotations (``value_info``) are dropped, since they carry the fixed batch;
4. the model records its source digest and the recipe in ``metadata_props``.

The prepared file is written to a temporary name and renamed into place, so concurrent preparers never
leave a half-written file. Only the driver or setup prepares; executors load the prepared file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: Recipe name of :func:`fold_block_dequantize` (its version is part of the name: a changed recipe is a
#: new name, so a pinned prepared digest never silently changes meaning).
FOLD_BLOCK_DEQUANTIZE = "fold_block_dequantize_v1"
BATCH_DIM = "N"


class PreparationError(RuntimeError):
    """A source model cannot be prepared by the named recipe (an op or attribute it does not handle)."""


def _dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int,
                block_size: int) -> np.ndarray:
    """ONNX ``DequantizeLinear``: per tensor, per axis or block-wise, as float32.

    Args:
        x: Quantised integer tensor.
        scale: float32 scale: a scalar, a 1-D per-``axis`` vector, or (block-wise) ``x``'s shape with
            ``ceil(dim / block_size)`` along ``axis``.
        zero_point: Same shape as ``scale`` (None: 0).
        axis: Quantisation axis.
        block_size: Block length along ``axis`` (0: not block-wise).
    """
    axis = axis % x.ndim if x.ndim else 0
    zp = np.zeros_like(scale, dtype=np.float32) if zero_point is None else zero_point.astype(np.float32)
    scale = scale.astype(np.float32)
    if block_size > 0:
        if scale.ndim != x.ndim:
            raise PreparationError(f"block-wise scale of rank {scale.ndim} for a tensor of rank {x.ndim}")
        length = x.shape[axis]
        scale = np.repeat(scale, block_size, axis=axis).take(range(length), axis=axis)
        zp = np.repeat(zp, block_size, axis=axis).take(range(length), axis=axis)
    elif scale.ndim == 1 and x.ndim > 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((x.astype(np.float32) - zp) * scale).astype(np.float32)


def fold_block_dequantize(source: bytes) -> bytes:
    """Apply the :data:`FOLD_BLOCK_DEQUANTIZE` recipe (see the module docstring) to a serialised model.

    Raises:
        PreparationError: A ``DequantizeLinear`` has an ``output_dtype`` other than float32, or the result
            fails ONNX's checker.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(source)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    folded: list[onnx.TensorProto] = []
    kept_nodes = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(i in inits for i in node.input if i):
            kept_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("output_dtype", 0) not in (0, onnx.TensorProto.FLOAT):
            raise PreparationError(f"{node.name}: output_dtype {attrs['output_dtype']} is not float32")
        arrays = [numpy_helper.to_array(inits[i]) if i else None for i in node.input]
        x, scale = arrays[0], arrays[1]
        assert x is not None and scale is not None
        zero_point = arrays[2] if len(arrays) > 2 else None
        value = _dequantize(x, scale, zero_point, int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
        folded.append(numpy_helper.from_array(value, node.output[0]))
    read = {i for n in kept_nodes for i in n.input} | {o.name for o in graph.output}
    initializers = [t for t in graph.initializer if t.name in read] + [t for t in folded if t.name in read]
    backed = {t.name for t in initializers}
    inputs = [i for i in graph.input if i.name in read and i.name not in backed]
    for value_info in [*inputs, *graph.output]:
        dims = value_info.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    del graph.node[:]
    graph.node.extend(kept_nodes)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.value_info[:]
    del model.metadata_props[:]
    helper.set_model_props(model, {
        "facelink.recipe": FOLD_BLOCK_DEQUANTIZE,
        "facelink.source_sha256": hashlib.sha256(source).hexdigest(),
    })
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise PreparationError(f"prepared model fails the ONNX checker: {exc}") from exc
    logger.info("folded %d DequantizeLinear nodes; %d nodes, %d initializers, inputs %s", len(folded),
                len(kept_nodes), len(initializers), [i.name for i in inputs])
    return model.SerializeToString(deterministic=True)


#: Recipe name -> function from source bytes to prepared bytes.
RECIPES: dict[str, Callable[[bytes], bytes]] = {FOLD_BLOCK_DEQUANTIZE: fold_block_dequantize}


def prepare_file(source: Path, source_sha256: str, recipe: str, target: Path) -> str:
    """Prepare ``source`` into ``target`` with ``recipe``; return the prepared file's sha256.

    Raises:
        FileNotFoundError: No source file.
        ValueError: Unknown recipe, or the source's sha256 differs from ``source_sha256``.
        PreparationError: The recipe cannot handle the source.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown preparation recipe {recipe!r} (known: {sorted(RECIPES)})")
    if not source.is_file():
        raise FileNotFoundError(f"source model not found at {source}")
    data = source.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != source_sha256:
        raise ValueError(f"source model {source} has sha256 {actual}, expected {source_sha256}; refusing it")
    prepared = RECIPES[recipe](data)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(prepared)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    digest = hashlib.sha256(prepared).hexdigest()
    logger.info("prepared %s -> %s (%s, sha256 %s)", source.name, target, recipe, digest)
    return digest
