"""Typed configuration: ``conf/base.yaml`` merged with ``conf/<env>.yaml`` and ``--set a.b=c`` overrides.

The configuration is a frozen dataclass tree, validated on load: an unknown key, a missing section or a
value of the wrong type raises :class:`ConfigError` naming the dotted key and what was expected. This is
the only module that reads the process environment (``FACELINK_*`` variables, see :data:`ENV_VARS`).
Executors never read configuration files: jobs pass plain values into UDF factories.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pwd
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from udfs.face_quality_rule import QualityRule

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Environment variables read here (and only here), with the configuration key each one overrides.
ENV_VARS = {
    "FACELINK_LAKE_ROOT": "lake.root",
    "FACELINK_MODELS_DIR": "paths.models_dir",
    "FACELINK_DATA_DIR": "paths.data_dir",
    "FACELINK_JARS_DIR": "paths.jars_dir",
    "FACELINK_AUDIT_PSEUDONYM_KEY": "audit.pseudonym_key",
    "FACELINK_S3_ACCESS_KEY_ID": "lake.s3.access_key_id",
    "FACELINK_S3_SECRET_ACCESS_KEY": "lake.s3.secret_access_key",
    "FACELINK_S3_SESSION_TOKEN": "lake.s3.session_token",
}
#: Keys that only their environment variable may set: never a configuration file or a ``--set`` override
#: (files are shared and versioned, command lines show in process listings).
ENV_ONLY_KEYS = ("lake.s3.access_key_id", "lake.s3.secret_access_key", "lake.s3.session_token")
CONF_DIR_VAR = "FACELINK_CONF_DIR"
#: An identity the orchestrator passes to a job (a reviewer signed in to it); trusted only where
#: ``review.trust_orchestrator_identity`` is true, and always recorded beside the OS account.
IDENTITY_VAR = "FACELINK_IDENTITY"
#: The deployment file of the Airflow DAG (default ``<conf dir>/deploy.yaml``): see :func:`load_deployment`.
DEPLOY_FILE_VAR = "FACELINK_DEPLOY_FILE"

#: Mapping keys whose values are secrets: masked in logs and in the configuration hash.
# A key is secret when it names one of these, or has "key" as a word of its own (Azure account keys, S3 SSE-C
# keys: spark.hadoop.fs.azure.account.key.<account>..., spark.hadoop.fs.s3a.encryption.key).
SECRET_KEY_RE = re.compile(r"(secret|password|passwd|token|credential|access\.?key|private|(^|[._-])key([._-]|$))",
                           re.IGNORECASE)
MASK = "***"


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


@dataclass(frozen=True)
class LakeS3Conf:
    """How the driver, the executors and Spark's s3a reach an S3-compatible object store (``s3a://`` URIs).

    ``facelink.lake.fs`` turns it into the ``spark.hadoop.fs.s3a.*`` settings of the session and into the
    pyarrow filesystem of every non-Delta artefact, so both reach the lake the same way. It is a plain frozen
    value: jobs pass it to executors, which never read configuration files.

    Attributes:
        endpoint: ``host[:port]`` of the store; ``""`` = AWS S3's endpoint for ``region``.
        region: the signing region (most S3-compatible servers accept ``us-east-1``).
        path_style_access: ``http://host/bucket/key`` instead of ``http://bucket.host/key`` (most non-AWS stores).
        ssl: HTTPS to the endpoint; false only on a trusted network or loopback.
        credentials: ``default``: the AWS default chain (``AWS_*`` variables, profile, web identity, container
            or instance role), resolved by each process; ``static``: the keys below; ``anonymous``: no signing.
        access_key_id: secret, only from ``FACELINK_S3_ACCESS_KEY_ID`` (with ``credentials: static``).
        secret_access_key: secret, only from ``FACELINK_S3_SECRET_ACCESS_KEY``.
        session_token: secret, only from ``FACELINK_S3_SESSION_TOKEN`` (temporary credentials).
    """

    endpoint: str = ""
    region: str = "us-east-1"
    path_style_access: bool = False
    ssl: bool = True
    credentials: Literal["default", "static", "anonymous"] = "default"
    access_key_id: str = field(default="", repr=False)
    secret_access_key: str = field(default="", repr=False)
    session_token: str = field(default="", repr=False)


@dataclass(frozen=True)
class LakeConf:
    root: str = "./lake"
    s3: LakeS3Conf = field(default_factory=LakeS3Conf)


@dataclass(frozen=True)
class PathsConf:
    models_dir: str = "../shared/models"
    data_dir: str = "../shared/datasets"
    jars_dir: str = "./.jars"
    prepared_models_dir: str = "./.models"


@dataclass(frozen=True)
class SparkConf:
    master: str = "local[*]"
    app_name: str = "facelink"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    delta_snapshot_partitions: int = 2
    arrow_batch_size: int = 256
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestConf:
    role: Literal["gallery", "probe"] = "gallery"
    partition_column: str = ""
    partition_buckets: int = 4
    max_file_bytes: int = 20_000_000
    max_pixels: int = 40_000_000
    record_id_pattern: str = r"^(.+?)(?:__[^.]*)?\.[A-Za-z0-9]+$"
    # folders (or URIs) ingest may read photos from; "<manifest>": the manifest's folder (the input folder),
    # "<data_dir>": paths.data_dir
    allowed_roots: list[str] = field(default_factory=lambda: ["<manifest>"])
    allowed_schemes: list[str] = field(default_factory=lambda: ["file"])


@dataclass(frozen=True)
class ModelFile:
    """One model of the registry: the file, its pinned digest and how to feed it."""

    file: str
    sha256: str
    kind: Literal["detector", "recogniser"]
    input_size: list[int]
    template: str = ""
    normalisation: str = ""
    dim: int = 0
    colour: Literal["rgb", "bgr"] = "rgb"
    # A model prepared from an upstream file (udfs.prepare): ``source`` in ``paths.models_dir`` with digest
    # ``source_sha256`` becomes ``file`` (digest ``sha256``) in ``paths.prepared_models_dir`` by ``prepare``.
    source: str = ""
    source_sha256: str = ""
    prepare: str = ""


@dataclass(frozen=True)
class ModelsConf:
    detector: str = "yunet_dynamic"
    recogniser: str = "mobilefacenet_128d"          # a registry recogniser or a name in ``fusions``
    registry: dict[str, ModelFile] = field(default_factory=dict)
    # fusion name -> {registry recogniser: score weight}: the fused score is the weighted mean of the members'
    # cosines, stored as one embedding (the members' unit vectors, each scaled by sqrt(weight), concatenated)
    fusions: dict[str, dict[str, float]] = field(default_factory=dict)
    # fusion name -> {member: flip TTA}: a member's own flip TTA setting; members not named follow
    # extract.flip_tta (part of the fusion's model_id)
    fusion_flip_tta: dict[str, dict[str, bool]] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditConf:
    operator: str = ""
    purpose: str = ""
    authority: str = ""
    allowed_purposes: list[str] = field(default_factory=list)
    # who may run accountable jobs: [] = anyone whose name fits facelink.identifiers' "operator" pattern
    operators: list[str] = field(default_factory=list)
    # HMAC key of the pseudonyms that stand for data subjects in runs and audit (a secret: masked in logs and
    # the config hash); "" = a random key per process, so pseudonyms link nothing across runs
    pseudonym_key: str = ""
    # job -> the purposes it may run under (each also in allowed_purposes); a job not listed takes any allowed one
    job_purposes: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ExtractConf:
    detect_size: int = 480
    score_threshold: float = 0.6
    nms_iou: float = 0.3
    batch_size: int = 8
    detect_batch_size: int = 1
    threads_per_task: int = 1
    flip_tta: bool = True
    align_method: Literal["lstsq", "lmeds"] = "lstsq"
    photos_per_partition: int = 500


@dataclass(frozen=True)
class IndexConf:
    flat_max: int = 50_000
    memory_budget_mb: int = 4096
    recall_target: float = 0.99
    shard_size: int = 250_000
    recall_queries: int = 500
    rebuild_growth: float = 0.5
    rebuild_recall_drop: float = 0.02
    threads: int = 2
    search_threads: int = 2
    search_breadth: Literal["floor", "knn"] = "floor"
    gallery_quality: Literal["flag", "exclude"] = "flag"


@dataclass(frozen=True)
class MatchConf:
    k: int = 10
    target_fpir: float = 0.003
    bands: dict[str, float] = field(default_factory=lambda: {"strong": 0.003, "possible": 0.05})
    partitions: list[str] = field(default_factory=list)
    calibration_path: str = ""


@dataclass(frozen=True)
class DedupConf:
    k: int = 10
    bands: dict[str, float] = field(default_factory=lambda: {"strong": 0.003, "possible": 0.05})
    incremental: bool = True


@dataclass(frozen=True)
class DqConf:
    max_reject_rate: float = 0.2
    max_no_face_rate: float = 0.2
    max_quality_fail_rate: float = 0.5
    embedding_norm_tol: float = 0.001
    data_docs: bool = True


@dataclass(frozen=True)
class RetentionConf:
    probe_days: int = 30
    vacuum_hours: int = 168


@dataclass(frozen=True)
class ReviewConf:
    # true only where jobs run under an orchestrator that signs reviewers in and sets FACELINK_IDENTITY;
    # elsewhere the reviewer is the OS account the job runs as
    trust_orchestrator_identity: bool = False


@dataclass(frozen=True)
class Identity:
    """Who runs this process: ``name`` (lower-cased) is the reviewer, ``os_user`` the account, ``source`` where
    the name came from (``os`` or ``orchestrator``)."""

    name: str
    os_user: str
    source: Literal["os", "orchestrator"]


def current_identity(trust_orchestrator: bool) -> Identity:
    """The identity of the person this job runs for, from the environment it runs in, never from its arguments.

    The OS account comes from the password database by the process's uid (``getpass`` would believe
    ``$USER``/``$LOGNAME``). ``$FACELINK_IDENTITY`` replaces it only when ``trust_orchestrator`` is true.
    """
    os_user = pwd.getpwuid(os.getuid()).pw_name
    passed = os.environ.get(IDENTITY_VAR, "").strip()
    if passed and trust_orchestrator:
        return Identity(passed.lower(), os_user, "orchestrator")
    return Identity(os_user.lower(), os_user, "os")


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of one job run."""

    env: str
    base_dir: str
    lake: LakeConf
    paths: PathsConf
    spark: SparkConf
    ingest: IngestConf
    models: ModelsConf
    audit: AuditConf
    extract: ExtractConf = field(default_factory=ExtractConf)
    quality: QualityRule = field(default_factory=QualityRule)  # the face quality rule, one type for both sides
    index: IndexConf = field(default_factory=IndexConf)
    match: MatchConf = field(default_factory=MatchConf)
    dedup: DedupConf = field(default_factory=DedupConf)
    dq: DqConf = field(default_factory=DqConf)
    retention: RetentionConf = field(default_factory=RetentionConf)
    review: ReviewConf = field(default_factory=ReviewConf)

    def resolve(self, path: str) -> str:
        """Return ``path`` made absolute against the repository root unless it is a URI or absolute."""
        if "://" in path or path.startswith("file:") or os.path.isabs(path):
            return path
        return str((Path(self.base_dir) / path).resolve())

    @property
    def lake_root(self) -> str:
        return self.resolve(self.lake.root)

    def table_path(self, table: str) -> str:
        """Location of a Delta table under the lake root."""
        return f"{self.lake_root.rstrip('/')}/tables/{table}"

    def with_overrides(self, overrides: Sequence[str]) -> Config:
        """Return a copy with ``a.b=c`` overrides applied (re-validated)."""
        data = to_dict(self)
        for item in overrides:
            _apply_override(data, item)
        return _build_config(data)


@dataclass(frozen=True)
class Deployment:
    """What the Airflow DAG runs, fixed by whoever deploys it (never by a trigger's parameters).

    Attributes:
        home: folder holding ``jobs/``, ``conf/`` and ``.jars/`` on the Airflow worker.
        env: the configuration environment whose ``audit`` section validates the DAG's trigger parameters.
        envs: the environments a trigger may choose (``[]``: just ``env``).
        py_files: ``--py-files`` (``make dist``); deploy a new zip under a new name, since a running driver
            reads modules lazily from the zip it started with.
        driver_python: ``spark.pyspark.driver.python``.
        executor_python: ``spark.pyspark.python`` (``./environment/bin/python`` with the packed env).
        archives: ``spark.archives``, e.g. ``hdfs:///facelink/facelink-env.tar.gz#environment``.
        jars: the Delta jars, relative to ``home`` or absolute.
    """

    home: str
    env: str = "local"
    envs: list[str] = field(default_factory=list)
    py_files: str = "dist/facelink.zip"
    driver_python: str = ".venv/bin/python"
    executor_python: str = ".venv/bin/python"
    archives: str = ""
    jars: list[str] = field(default_factory=lambda: [".jars/delta-spark_4.2_2.13-*.jar", ".jars/delta-storage-*.jar"])

    def path(self, value: str) -> str:
        """``value`` made absolute against :attr:`home` unless it is a URI, absolute or empty."""
        if not value or "://" in value or value.startswith(("file:", "/", "./environment")):
            return value
        return f"{self.home.rstrip('/')}/{value}"


def load_deployment(home: str | Path) -> Deployment:
    """The DAG's :class:`Deployment`: ``$FACELINK_DEPLOY_FILE`` or ``<home>/conf/deploy.yaml`` if it exists, over
    the defaults (paths relative to ``home``).

    Raises:
        ConfigError: the file is not valid YAML, or has an unknown key or a value of the wrong type.
    """
    file = Path(os.environ[DEPLOY_FILE_VAR]) if os.environ.get(DEPLOY_FILE_VAR) else Path(home) / "conf" / "deploy.yaml"
    data: dict[str, Any] = {"home": str(home)}
    if file.is_file():
        data.update(_read_yaml(file))
    built = _build(Deployment, data, "deploy")
    assert isinstance(built, Deployment)
    return built


def default_conf_dir() -> Path:
    """``$FACELINK_CONF_DIR`` if set, else ``conf/`` beside the package, else ``./conf``."""
    if os.environ.get(CONF_DIR_VAR):
        return Path(os.environ[CONF_DIR_VAR])
    here = REPO_ROOT / "conf"
    return here if here.is_dir() else Path.cwd() / "conf"


def load_config(env: str = "local", overrides: Sequence[str] = (), conf_dir: str | Path | None = None) -> Config:
    """Load ``base.yaml`` + ``<env>.yaml`` from ``conf_dir``, then environment, then ``--set`` overrides.

    Raises:
        ConfigError: a file is missing or unreadable, a key is unknown, or a value has the wrong type.
    """
    cdir = Path(conf_dir) if conf_dir else default_conf_dir()
    data = _read_yaml(cdir / "base.yaml")
    env_file = cdir / f"{env}.yaml"
    if not env_file.is_file():
        raise ConfigError(f"env: no configuration file {env_file} for environment {env!r}")
    _deep_merge(data, _read_yaml(env_file))
    _refuse_env_only(data, f"{cdir}/base.yaml or {env_file.name}")
    data["env"] = env
    data.setdefault("base_dir", str(cdir.resolve().parent))
    for var, key in ENV_VARS.items():
        if os.environ.get(var):
            if key in ENV_ONLY_KEYS:
                _set_raw(data, key, os.environ[var])  # a secret is a string as given, never parsed as YAML
            else:
                _apply_override(data, f"{key}={os.environ[var]}")
    for item in overrides:
        probe: dict[str, Any] = {}
        _apply_override(probe, item)
        _refuse_env_only(probe, f"override {item.split('=', 1)[0]}")
        _apply_override(data, item)
    return _build_config(data)


def _set_raw(data: dict[str, Any], key: str, value: str) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _refuse_env_only(data: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError when ``data`` sets a key of :data:`ENV_ONLY_KEYS` to a non-empty value."""
    env_of = {key: var for var, key in ENV_VARS.items()}
    for key in ENV_ONLY_KEYS:
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node not in (None, ""):
            raise ConfigError(f"{key}: a secret, set only by the environment variable {env_of[key]} (found in {where})")


def to_dict(cfg: Any) -> Any:
    """Plain dict/list form of a configuration tree (no masking)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [to_dict(v) for v in cfg]
    return cfg


def masked_dict(cfg: Any) -> Any:
    """Like :func:`to_dict` but with every secret value replaced by ``***``."""
    return _mask(to_dict(cfg))


def config_hash(cfg: Config) -> str:
    """sha256 of the resolved configuration with secrets masked (so a rotated secret keeps the hash)."""
    blob = json.dumps(masked_dict(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _mask(value: Any, key: str = "") -> Any:
    if key and SECRET_KEY_RE.search(key):
        return MASK
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return loaded


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _apply_override(data: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. lake.root=/data/lake")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node[parts[-1]] = value


def _build_config(data: dict[str, Any]) -> Config:
    built = _build(Config, data, "")
    assert isinstance(built, Config)
    _validate(built)
    return built


def _validate(cfg: Config) -> None:
    if cfg.ingest.partition_buckets < 1:
        raise ConfigError("ingest.partition_buckets: expected an integer >= 1")
    if cfg.spark.shuffle_partitions < 1:
        raise ConfigError("spark.shuffle_partitions: expected an integer >= 1")
    if cfg.spark.delta_snapshot_partitions < 1:
        raise ConfigError("spark.delta_snapshot_partitions: expected an integer >= 1")
    for key, value in (("index.threads", cfg.index.threads), ("index.search_threads", cfg.index.search_threads)):
        if value < 1:
            raise ConfigError(f"{key}: expected an integer >= 1")
    _validate_lake(cfg.lake)
    _validate_models(cfg.models)
    try:
        re.compile(cfg.ingest.record_id_pattern)
    except re.error as exc:
        raise ConfigError(f"ingest.record_id_pattern: not a valid regular expression: {exc}") from exc


def _validate_lake(lake: LakeConf) -> None:
    s3 = lake.s3
    if "://" in s3.endpoint or "/" in s3.endpoint:
        raise ConfigError(f"lake.s3.endpoint: expected host[:port] (lake.s3.ssl chooses https or http), "
                          f"got {s3.endpoint!r}")
    if s3.credentials == "static" and not (s3.access_key_id and s3.secret_access_key):
        raise ConfigError("lake.s3.credentials: static credentials need FACELINK_S3_ACCESS_KEY_ID and "
                          "FACELINK_S3_SECRET_ACCESS_KEY in the environment")


def _validate_models(models: ModelsConf) -> None:
    if models.detector not in models.registry:
        raise ConfigError(f"models: {models.detector!r} is not in models.registry ({sorted(models.registry)})")
    known = sorted({*models.registry, *models.fusions})
    if models.recogniser not in models.registry and models.recogniser not in models.fusions:
        raise ConfigError(f"models: {models.recogniser!r} is not in models.registry or models.fusions ({known})")
    for name, entry in models.registry.items():
        given = [bool(entry.source), bool(entry.source_sha256), bool(entry.prepare)]
        if any(given) and not all(given):
            raise ConfigError(f"models.registry.{name}: a prepared model needs source, source_sha256 and prepare")
    _validate_fusions(models)


def _validate_fusions(models: ModelsConf) -> None:
    for name, members in models.fusions.items():
        if name in models.registry:
            raise ConfigError(f"models.fusions.{name}: the name is taken by a registry model")
        if len(members) < 2:
            raise ConfigError(f"models.fusions.{name}: a fusion needs at least two recognisers")
        for member, weight in members.items():
            entry = models.registry.get(member)
            if entry is None or entry.kind != "recogniser":
                raise ConfigError(f"models.fusions.{name}.{member}: not a recogniser of models.registry")
            if not weight > 0:
                raise ConfigError(f"models.fusions.{name}.{member}: the weight must be > 0, got {weight}")
    for name, flips in models.fusion_flip_tta.items():
        if name not in models.fusions:
            raise ConfigError(f"models.fusion_flip_tta.{name}: not a fusion of models.fusions")
        for member in flips:
            if member not in models.fusions[name]:
                raise ConfigError(f"models.fusion_flip_tta.{name}.{member}: not a member of that fusion")


def _build(tp: Any, value: Any, key: str) -> Any:  # noqa: C901 - one branch per supported type
    """Convert ``value`` to type ``tp``; raise ConfigError naming ``key`` when it does not fit."""
    where = key or "<root>"
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"{_join(key, unknown[0])}: unknown key (expected one of {sorted(names)})")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = _build(hints[f.name], value[f.name], _join(key, f.name))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{_join(key, f.name)}: missing required key")
        return tp(**kwargs)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {list(allowed)}, got {value!r}")
        return value
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {str(k): _build(vt, v, _join(key, str(k))) for k, v in value.items()}
    if origin is list:
        (it,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_build(it, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value, key)
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
