"""The model registry of the configuration, as the wrappers' :class:`udfs.models.ModelSpec` values, and the
identity of the embeddings the configured extraction produces.

The configured recogniser is one registry model or a fusion of several (``models.fusions``). A fusion is
stored as one embedding: each member's unit vector scaled by the square root of its weight, concatenated
(:func:`udfs.embed.fuse_embeddings`), so that the inner product of two fused embeddings is the weighted mean
of the members' cosines. Index, match, dedup and calibration then work on it as on any single model.

Everything that changes the vectors is in their ``model_id``: the recogniser (name and digest, or the
fusion's name and a digest of its members and weights) and the extraction settings that differ from the
reference extraction (YuNet at 320, no flip TTA, least-squares alignment). So faces, indexes and
calibrations made under other settings are never mixed with the current ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from facelink.config import Config, ConfigError, load_config
from udfs.models import ModelIntegrityError, ModelSpec, file_sha256
from udfs.prepare import prepare_file

log = logging.getLogger(__name__)

#: The extraction that ``model_id`` leaves unsaid; any other setting is appended to it.
REFERENCE_DETECT_SIZE = 320
REFERENCE_ALIGN_METHOD = "lstsq"


def prepared_path(cfg: Config, name: str) -> Path:
    """Where the prepared file of registry model ``name`` lives: ``paths.prepared_models_dir``/``file``."""
    return Path(cfg.resolve(cfg.paths.prepared_models_dir)) / cfg.models.registry[name].file


def ensure_prepared(cfg: Config, name: str) -> Path | None:
    """Prepare registry model ``name`` from its upstream file unless its prepared file is already there.

    Models without a ``prepare`` recipe need nothing (None is returned). A prepared file that is present is
    not rewritten; its digest is checked against the registry when a wrapper loads it. A freshly prepared
    file whose digest differs from the pinned one is removed and refused.

    Raises:
        ModelIntegrityError: the preparation did not give the pinned digest.
        FileNotFoundError, ValueError: the upstream file is missing or differs from ``source_sha256``.
    """
    entry = cfg.models.registry[name]
    if not entry.prepare:
        return None
    target = prepared_path(cfg, name)
    if target.is_file():
        return target
    source = Path(cfg.resolve(cfg.paths.models_dir)) / entry.source
    log.info("preparing %s from %s (%s) into %s", name, source, entry.prepare, target)
    digest = prepare_file(source, entry.source_sha256, entry.prepare, target)
    if digest != entry.sha256:
        target.unlink(missing_ok=True)
        raise ModelIntegrityError(target, entry.sha256, digest)
    return target


def model_spec(cfg: Config, name: str) -> ModelSpec:
    """The registry entry ``name`` as a ModelSpec (validated by the wrapper's own checks).

    A prepared model (one with a ``prepare`` recipe) is prepared on first use (:func:`ensure_prepared`), and
    its spec's path is the prepared file's absolute path, which the wrappers take as is.

    Raises:
        ConfigError: the name is not in ``models.registry`` or its entry is inconsistent.
    """
    entry = cfg.models.registry.get(name)
    if entry is None:
        raise ConfigError(f"models.registry: no model {name!r} (have {sorted(cfg.models.registry)})")
    prepared = ensure_prepared(cfg, name)
    try:
        return ModelSpec(
            name=name,
            path=str(prepared) if prepared is not None else entry.file,
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


@dataclass(frozen=True)
class Recogniser:
    """What turns an aligned face into the stored embedding: one model, or a weighted fusion of several.

    Attributes:
        name: Registry or fusion name.
        members: The models, in the order their vectors are concatenated.
        weights: Score weight of each member, summing to 1 (``(1.0,)`` for one model).
        flips: Per member, its own flip TTA setting, or None where it follows ``extract.flip_tta``
            (``()``: every member follows it).
    """

    name: str
    members: tuple[ModelSpec, ...]
    weights: tuple[float, ...]
    flips: tuple[bool | None, ...] = ()

    def __post_init__(self) -> None:
        if not self.members or len(self.members) != len(self.weights):
            raise ValueError(f"recogniser {self.name!r}: one weight per member, at least one member")
        if self.flips and len(self.flips) != len(self.members):
            raise ValueError(f"recogniser {self.name!r}: one flip setting per member, or none")
        if abs(sum(self.weights) - 1.0) > 1e-9 or min(self.weights) <= 0:
            raise ValueError(f"recogniser {self.name!r}: weights must be > 0 and sum to 1, got {self.weights}")

    @property
    def fused(self) -> bool:
        return len(self.members) > 1

    @property
    def dim(self) -> int:
        """Length of the stored embedding (the members' dimensions added up)."""
        return sum(int(m.dim or 0) for m in self.members)

    def member_flips(self, flip_tta: bool) -> tuple[bool, ...]:
        """Each member's flip TTA when the extraction's setting is ``flip_tta``."""
        own = self.flips or (None,) * len(self.members)
        return tuple(flip_tta if f is None else f for f in own)

    @property
    def base_id(self) -> str:
        """``name@digest12`` of the model, or of the fusion's members, weights and members' own flip settings."""
        if not self.fused:
            return self.members[0].model_id
        own = self.flips or (None,) * len(self.members)
        content = json.dumps([
            [m.model_id, round(w, 9)] + ([] if f is None else [f"flip_tta={str(f).lower()}"])
            for m, w, f in zip(self.members, self.weights, own, strict=True)
        ])
        return f"{self.name}@{hashlib.sha256(content.encode()).hexdigest()[:12]}"


def recogniser(cfg: Config, name: str | None = None) -> Recogniser:
    """The configured (or named) recogniser: a registry model or a ``models.fusions`` entry.

    Raises:
        ConfigError: the name is in neither, or a member is not a recogniser.
    """
    name = name or cfg.models.recogniser
    fusion = cfg.models.fusions.get(name)
    if fusion is None:
        spec = model_spec(cfg, name)
        if spec.kind != "recogniser":
            raise ConfigError(f"models.recogniser: {name!r} is a {spec.kind}, not a recogniser")
        return Recogniser(name, (spec,), (1.0,))
    total = float(sum(fusion.values()))
    members = tuple(model_spec(cfg, member) for member in fusion)
    own = cfg.models.fusion_flip_tta.get(name, {})
    flips = tuple(own.get(member) for member in fusion) if own else ()
    return Recogniser(name, members, tuple(float(w) / total for w in fusion.values()), flips)


def extraction_suffix(detect_size: int, flip_tta: bool, align_method: str) -> str:
    """What the extraction adds to a model id: ``""`` for the reference, else e.g. ``"+flip+d640"``."""
    parts = []
    if flip_tta:
        parts.append("flip")
    if detect_size != REFERENCE_DETECT_SIZE:
        parts.append(f"d{detect_size}")
    if align_method != REFERENCE_ALIGN_METHOD:
        parts.append(align_method)
    return "".join(f"+{p}" for p in parts)


def recogniser_id(cfg: Config, name: str | None = None) -> str:
    """The ``model_id`` of the embeddings the configured extraction makes with the configured (or named)
    recogniser: its base id plus the extraction settings (see :func:`extraction_suffix`)."""
    ex = cfg.extract
    return recogniser(cfg, name).base_id + extraction_suffix(ex.detect_size, ex.flip_tta, ex.align_method)


def recogniser_names(cfg: Config) -> list[str]:
    """Every recogniser the configuration can name: registry recognisers and fusions."""
    return [n for n, e in cfg.models.registry.items() if e.kind == "recogniser"] + list(cfg.models.fusions)


def prepare_models(cfg: Config) -> dict[str, str]:
    """Prepare every registry model that has a recipe; return name -> prepared file's sha256 (checked)."""
    out = {}
    for name, entry in cfg.models.registry.items():
        path = ensure_prepared(cfg, name)
        if path is None:
            continue
        digest = file_sha256(path)
        if digest != entry.sha256:
            raise ModelIntegrityError(path, entry.sha256, digest)
        out[name] = digest
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m facelink.registry prepare``: write the prepared models (``make setup`` runs it)."""
    parser = argparse.ArgumentParser(prog="python -m facelink.registry", description=main.__doc__)
    parser.add_argument("command", choices=["prepare"])
    parser.add_argument("--env", default="local")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.env, args.overrides)
    for name, digest in prepare_models(cfg).items():
        print(f"prepared {name}: {prepared_path(cfg, name)} sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
