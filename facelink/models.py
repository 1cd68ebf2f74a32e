"""The model registry of the configuration, as the wrappers' :class:`udfs.models.ModelSpec` values."""

from __future__ import annotations

from facelink.config import Config, ConfigError
from udfs.models import ModelSpec


def model_spec(cfg: Config, name: str) -> ModelSpec:
    """The registry entry ``name`` as a ModelSpec (validated by the wrapper's own checks).

    Raises:
        ConfigError: the name is not in ``models.registry`` or its entry is inconsistent.
    """
    entry = cfg.models.registry.get(name)
    if entry is None:
        raise ConfigError(f"models.registry: no model {name!r} (have {sorted(cfg.models.registry)})")
    try:
        return ModelSpec(
            name=name,
            path=entry.file,
            sha256=entry.sha256,
            kind=entry.kind,
            input_size=(int(entry.input_size[0]), int(entry.input_size[1])),
            template=entry.template or None,  # type: ignore[arg-type]
            normalisation=entry.normalisation or None,  # type: ignore[arg-type]
            dim=entry.dim or None,
            colour=entry.colour,
        )
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"models.registry.{name}: {exc}") from exc


def recogniser_id(cfg: Config, name: str | None = None) -> str:
    """The ``model_id`` (name@digest prefix) of the configured (or named) recogniser."""
    return model_spec(cfg, name or cfg.models.recogniser).model_id
