"""Model registry: digests, signatures, cache."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from tests.paths import MODELS_DIR
from tests.registry import registry_names, registry_spec
from udfs.models import (
    ModelIntegrityError,
    ModelSignatureError,
    ModelSpec,
    cache_key,
    file_sha256,
    get_cached,
    load_onnx,
    resolve_model,
)

MOBILEFACENET = registry_spec("mobilefacenet_128d")


def test_registry_digests_match_the_shared_files() -> None:
    for spec in map(registry_spec, registry_names()):
        assert file_sha256(resolve_model(spec, MODELS_DIR)) == spec.sha256, spec.name


def test_model_id_is_name_and_digest_prefix() -> None:
    assert MOBILEFACENET.model_id == "mobilefacenet_128d@363229ee1930"


def test_tampered_file_is_refused_with_both_digests(tmp_path: Path) -> None:
    tampered = tmp_path / MOBILEFACENET.path
    shutil.copyfile(resolve_model(MOBILEFACENET, MODELS_DIR), tampered)
    with tampered.open("r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError) as info:
        load_onnx(MOBILEFACENET, tmp_path)
    assert info.value.expected == MOBILEFACENET.sha256
    assert info.value.actual == file_sha256(tampered)
    assert str(tampered) in str(info.value)


def test_signature_mismatch_is_refused() -> None:
    wrong_size = dataclasses.replace(MOBILEFACENET, input_size=(150, 150))
    with pytest.raises(ModelSignatureError, match="112"):
        load_onnx(wrong_size, MODELS_DIR)
    wrong_dim = dataclasses.replace(MOBILEFACENET, dim=512)
    with pytest.raises(ModelSignatureError, match="512"):
        load_onnx(wrong_dim, MODELS_DIR)
    as_detector = dataclasses.replace(
        MOBILEFACENET, kind="detector", template=None, normalisation=None, dim=None
    )
    with pytest.raises(ModelSignatureError, match="outputs missing"):
        load_onnx(as_detector, MODELS_DIR)


def test_missing_file_and_bad_spec_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_onnx(MOBILEFACENET, tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        ModelSpec("x", "x.onnx", "abc", "recogniser", (112, 112), "arcface112", "imagenet", 128, "rgb")


def test_load_sets_threads_and_cpu_provider() -> None:
    session = load_onnx(MOBILEFACENET, MODELS_DIR, threads=2)
    assert session.get_providers() == ["CPUExecutionProvider"]


def test_get_cached_builds_once_per_key() -> None:
    calls: list[int] = []

    def factory() -> object:
        calls.append(1)
        return object()

    key = cache_key(MOBILEFACENET, 1, "test_get_cached")
    first = get_cached(key, factory)
    assert get_cached(key, factory) is first
    assert len(calls) == 1
    assert cache_key(MOBILEFACENET, 2, "test_get_cached") != key
