"""Suite-wide fixtures: one real local SparkSession with Delta Lake for the whole run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from facelink.config import Config, load_config
from facelink.session import build_session


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    cfg = load_config("test", [f"lake.root={tmp_path_factory.mktemp('lake0')}"])
    session = build_session(cfg)
    yield session
    session.stop()


@pytest.fixture()
def cfg(tmp_path: Path) -> Config:
    """Test configuration with its own empty lake under a temporary folder."""
    return load_config("test", [f"lake.root={tmp_path / 'lake'}"])
