"""The model registry as the test configuration states it (``conf/base.yaml`` merged with ``conf/test.yaml``):
tests take model specs from the one registry, never from a copy of its digests."""

from __future__ import annotations

from functools import cache

from facelink.config import Config, load_config
from facelink.registry import model_spec
from udfs.models import ModelSpec


@cache
def test_config() -> Config:
    """The test configuration, as loaded once."""
    return load_config("test")


def registry_spec(name: str) -> ModelSpec:
    """The ``models.registry`` entry ``name`` of the test configuration as a :class:`ModelSpec`."""
    return model_spec(test_config(), name)


def registry_names() -> list[str]:
    """Every model of the test configuration's registry."""
    return list(test_config().models.registry)
