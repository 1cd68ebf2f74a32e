"""Prepared models: SFace folded from the upstream int8 file, byte-stable, equal to the source on real faces."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from facelink.config import Config, load_config
from facelink.registry import ensure_prepared, model_spec, prepared_path
from tests.paths import LFW_DIR, MODELS_DIR, read_bgr
from tests.registry import registry_spec
from udfs.align import align, get_template
from udfs.detect import FaceDetector
from udfs.embed import FaceEmbedder
from udfs.models import ModelIntegrityError
from udfs.prepare import FOLD_BLOCK_DEQUANTIZE, prepare_file

NAME = "sface_128d"
# lfw_dev pairs.txt fold 1: two same-person pairs, then the first person against two others.
PHOTOS = ["Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg",
          "Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg", "Akhmed_Zakayev/Akhmed_Zakayev_0003.jpg",
          "Jong_Thae_Hwa/Jong_Thae_Hwa_0002.jpg", "Donna_Morrissey/Donna_Morrissey_0001.jpg"]  # fmt: skip


@pytest.fixture()
def prep_cfg(tmp_path: Path) -> Config:
    return load_config("test", [f"lake.root={tmp_path / 'lake'}", f"paths.prepared_models_dir={tmp_path / 'prep'}",
                                f"paths.models_dir={MODELS_DIR}"])


def _source_session(entry_source: Path) -> ort.InferenceSession:
    """The upstream file with only the graph inputs no node reads dropped: onnxruntime runs it as shipped."""
    model = onnx.load(str(entry_source))
    read = {i for node in model.graph.node for i in node.input}
    kept = [i for i in model.graph.input if i.name in read]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _aligned_faces() -> np.ndarray:
    detector = FaceDetector(registry_spec("yunet_dynamic"), MODELS_DIR, 480)
    crops = []
    for rel in PHOTOS:
        photo = read_bgr(LFW_DIR / rel)
        crops.append(align(photo, detector.detect(photo).landmarks[0], get_template("arcface112")))
    return np.stack(crops)


def test_preparation_is_deterministic_and_gives_the_pinned_file(prep_cfg: Config, tmp_path: Path) -> None:
    entry = prep_cfg.models.registry[NAME]
    source = MODELS_DIR / entry.source
    digests = [prepare_file(source, entry.source_sha256, entry.prepare, tmp_path / f"run{i}.onnx") for i in (1, 2)]
    assert digests[0] == digests[1] == entry.sha256
    assert (tmp_path / "run1.onnx").read_bytes() == (tmp_path / "run2.onnx").read_bytes()
    model = onnx.load(str(tmp_path / "run1.onnx"))
    assert {p.key: p.value for p in model.metadata_props} == {
        "facelink.recipe": FOLD_BLOCK_DEQUANTIZE, "facelink.source_sha256": entry.source_sha256}
    assert not [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert [i.name for i in model.graph.input] == ["data"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_prepared_model_equals_the_source_on_real_aligned_faces(prep_cfg: Config) -> None:
    entry = prep_cfg.models.registry[NAME]
    spec = model_spec(prep_cfg, NAME)
    embedder = FaceEmbedder(spec, MODELS_DIR, batch_size=len(PHOTOS), flip_tta=False)
    x = embedder.preprocess(_aligned_faces())
    assert x.shape == (len(PHOTOS), 3, 112, 112) and float(x.max()) > 200, "SFace takes RGB 0..255"
    source = _source_session(MODELS_DIR / entry.source)
    expected = np.concatenate([source.run(None, {"data": x[i : i + 1]})[0] for i in range(len(x))])
    prepared = embedder._session.run(None, {"data": x})[0]  # the whole batch in one call: symbolic batch
    assert prepared.shape == (len(PHOTOS), 128)
    assert np.max(np.abs(prepared - expected)) < 1e-5
    # and the embeddings tell the people apart: both same-person pairs above every different-person pair
    v = embedder.embed(_aligned_faces())
    same = [float(v[0] @ v[1]), float(v[2] @ v[3])]
    different = [float(v[0] @ v[4]), float(v[0] @ v[5]), float(v[2] @ v[5])]
    assert min(same) > max(different), (same, different)


def test_prepared_on_first_use_once_and_refused_when_the_digest_differs(prep_cfg: Config) -> None:
    target = prepared_path(prep_cfg, NAME)
    assert not target.exists()
    spec = model_spec(prep_cfg, NAME)
    assert Path(spec.path) == target and target.is_file()
    assert hashlib.sha256(target.read_bytes()).hexdigest() == spec.sha256
    stamp = target.stat().st_mtime_ns
    assert ensure_prepared(prep_cfg, NAME) == target and target.stat().st_mtime_ns == stamp, "not rewritten"
    assert ensure_prepared(prep_cfg, "mobilefacenet_128d") is None, "a shipped model needs no preparation"

    target.unlink()
    wrong = prep_cfg.with_overrides([f"models.registry.{NAME}.sha256={'0' * 64}"])
    with pytest.raises(ModelIntegrityError):
        model_spec(wrong, NAME)
    assert not target.exists(), "a prepared file with the wrong digest is removed"
    bad_source = prep_cfg.with_overrides([f"models.registry.{NAME}.source_sha256={'1' * 64}"])
    with pytest.raises(ValueError, match="refusing"):
        model_spec(bad_source, NAME)
