"""Fused recognisers: the fused embedding, its configuration and model id, and the extract job producing it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession

from facelink.config import Config, ConfigError, load_config
from facelink.extraction.settings import ExtractSettings
from facelink.registry import recogniser, recogniser_id
from jobs import extract, ingest
from tests.paths import LFW_DIR, MODELS_DIR
from udfs.embed import fuse_embeddings, l2_normalise
from udfs.face_quality_rule import QualityRule
from udfs.pipeline import build_pipeline

PHOTOS = ["AJ_Cook/AJ_Cook_0001.jpg", "Aaron_Pena/Aaron_Pena_0001.jpg", "Abdullah_Gul/Abdullah_Gul_0001.jpg"]


def test_fused_inner_product_is_the_weighted_mean_of_the_cosines() -> None:
    rng = np.random.default_rng(3)
    a = [l2_normalise(rng.normal(size=(5, 128))), l2_normalise(rng.normal(size=(5, 64)))]
    b = [l2_normalise(rng.normal(size=(5, 128))), l2_normalise(rng.normal(size=(5, 64)))]
    w = (0.7, 0.3)
    fa, fb = fuse_embeddings(a, w), fuse_embeddings(b, w)
    assert fa.shape == (5, 192) and fa.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fa, axis=1), 1.0, atol=1e-6)
    cos = [np.sum(x * y, axis=1) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(np.sum(fa * fb, axis=1), w[0] * cos[0] + w[1] * cos[1], atol=1e-6)


@pytest.mark.parametrize("weights", [(0.5, 0.6), (1.0, 0.0), (1.0,)])
def test_fuse_embeddings_refuses_bad_weights(weights: tuple[float, ...]) -> None:
    x = [np.ones((2, 4), np.float32) / 2, np.ones((2, 4), np.float32) / 2]
    with pytest.raises(ValueError, match="weight"):
        fuse_embeddings(x, weights)


def test_fusion_configuration_and_model_ids(tmp_path: Path) -> None:
    base = ["models.recogniser=mobilefacenet_128d", "extract.detect_size=320", "extract.flip_tta=false"]
    cfg = load_config("test", [f"lake.root={tmp_path}", *base])
    assert recogniser_id(cfg) == "mobilefacenet_128d@363229ee1930", "the reference extraction adds nothing"
    assert recogniser_id(cfg.with_overrides(["extract.flip_tta=true", "extract.detect_size=640"])) \
        == "mobilefacenet_128d@363229ee1930+flip+d640"

    fused = cfg.with_overrides(["models.recogniser=pair",
                                "models.fusions.pair={mobilefacenet_128d: 3, dlib_resnet34_128d: 1}"])
    rec = recogniser(fused)
    assert [m.name for m in rec.members] == ["mobilefacenet_128d", "dlib_resnet34_128d"]
    assert rec.weights == (0.75, 0.25) and rec.dim == 256
    other = fused.with_overrides(["models.fusions.pair={mobilefacenet_128d: 1, dlib_resnet34_128d: 1}"])
    assert recogniser_id(fused).startswith("pair@") and recogniser_id(other) != recogniser_id(fused)

    for bad, message in [
        ("pair={mobilefacenet_128d: 1, nope: 1}", "not a recogniser"),
        ("pair={mobilefacenet_128d: 1, yunet_dynamic: 1}", "not a recogniser"),
        ("pair={mobilefacenet_128d: 1, dlib_resnet34_128d: 0}", "must be > 0"),
        ("pair={mobilefacenet_128d: 1}", "at least two"),
        ("mobilefacenet_128d={mobilefacenet_128d: 1, dlib_resnet34_128d: 1}", "taken by a registry model"),
    ]:
        with pytest.raises(ConfigError, match=message):
            cfg.with_overrides(["models.recogniser=mobilefacenet_128d", f"models.fusions.{bad}"])
    with pytest.raises(ConfigError, match=r"not in models\.registry or models\.fusions"):
        cfg.with_overrides(["models.recogniser=nope"])


def test_member_flip_tta_of_a_fusion_is_configured_and_named(tmp_path: Path) -> None:
    cfg = load_config("test", [f"lake.root={tmp_path}", "models.recogniser=mobilefacenet_dlib"])
    assert recogniser(cfg).flips == () and recogniser(cfg).member_flips(True) == (True, True)
    own = cfg.with_overrides(["models.fusion_flip_tta={mobilefacenet_dlib: {dlib_resnet34_128d: false}}"])
    assert recogniser(own).member_flips(True) == (True, False)
    assert recogniser(own).member_flips(False) == (False, False)
    assert recogniser_id(own) != recogniser_id(cfg), "a member's own flip TTA changes the vectors: a new id"
    same = cfg.with_overrides(["models.fusion_flip_tta={mobilefacenet_dlib: {dlib_resnet34_128d: true}}"])
    assert recogniser_id(same) != recogniser_id(own)
    for bad, message in [("{nope: {mobilefacenet_128d: false}}", "not a fusion"),
                         ("{mobilefacenet_dlib: {sface_128d: false}}", "not a member")]:
        with pytest.raises(ConfigError, match=message):
            cfg.with_overrides([f"models.fusion_flip_tta={bad}"])


@pytest.mark.parametrize("fusion", ["mobilefacenet_dlib", "mobilefacenet_sface"])
def test_extract_with_the_shipped_fusion_equals_the_plain_wrappers(spark: SparkSession, tmp_path: Path,
                                                                     fusion: str) -> None:
    """A fusion of ``conf/base.yaml`` with the default extraction (YuNet at 480, flip TTA, unless a member has
    its own setting): the ``faces`` rows equal the wrappers' fused embeddings, under a model id naming the
    fusion and the settings."""
    cfg: Config = load_config("test", [f"lake.root={tmp_path / 'lake'}", f"models.recogniser={fusion}"])
    rec = recogniser(cfg)
    assert rec.fused and cfg.extract.flip_tta and cfg.extract.detect_size == 480
    folder = tmp_path / "in"
    folder.mkdir()
    for i, rel in enumerate(PHOTOS):
        shutil.copy(LFW_DIR / rel, folder / f"R{i}.jpg")
    ingest.run(spark, cfg, str(folder))
    res = extract.run(spark, cfg)
    assert res.photos == len(PHOTOS) and res.model_id == recogniser_id(cfg)
    assert res.model_id.startswith(f"{fusion}@") and res.model_id.endswith("+flip+d480")

    ex = cfg.extract
    plain = build_pipeline(MODELS_DIR, ExtractSettings.from_config(cfg).detector, rec.members,
                           detect_size=ex.detect_size, batch_size=64, flip_tta=rec.member_flips(ex.flip_tta),
                           quality_rule=QualityRule(), cached=False)
    faces = spark.read.format("delta").load(cfg.table_path("faces")).filter("is_primary").collect()
    assert len(faces) == len(PHOTOS)
    for row in faces:
        assert row.model_id == res.model_id and len(row.embedding) == rec.dim
        primary = plain.process((folder / f"{row.record_id}.jpg").read_bytes()).primary
        assert primary is not None
        expected = fuse_embeddings([primary["embeddings"][m.name][None] for m in rec.members], rec.weights)[0]
        assert np.max(np.abs(np.asarray(row.embedding) - expected)) < 1e-5
