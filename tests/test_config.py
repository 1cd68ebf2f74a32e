from pathlib import Path

import pytest

from facelink.config import ConfigError, config_hash, load_config, masked_dict


def test_base_and_env_merge_and_override() -> None:
    cfg = load_config("local", ["match.k=20", "spark.extra={spark.executor.memory: 2g}"])
    assert cfg.match.k == 20
    assert cfg.spark.extra == {"spark.executor.memory": "2g"}
    assert cfg.spark.driver_memory == "6g"  # from conf/local.yaml over base.yaml
    assert cfg.models.recogniser == "mobilefacenet_sface"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("match.k=abc", "match.k: expected an integer"),
        ("match.kk=1", "match.kk: unknown key"),
        ("ingest.role=archive", "ingest.role: expected one of ['gallery', 'probe']"),
        ("models.recogniser=nope", "models: 'nope' is not in models.registry"),
        ("extract.flip_tta=maybe", "extract.flip_tta: expected true or false"),
        ("index.search_threads=0", "index.search_threads: expected an integer >= 1"),
        ("spark.delta_snapshot_partitions=0", "spark.delta_snapshot_partitions: expected an integer >= 1"),
        ("index.search_breadth=wide", "index.search_breadth: expected one of ['floor', 'knn']"),
        ("novalue", "expected key=value"),
    ],
)
def test_invalid_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("local", [override])


def test_unknown_env_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"no configuration file .*nowhere\.yaml"):
        load_config("nowhere")


def test_cluster_example_loads() -> None:
    cfg = load_config("cluster")
    assert cfg.lake.root.startswith("s3a://")
    assert cfg.table_path("photos") == "s3a://facelink-lake/prod/tables/photos"


def test_session_settings_size_delta_state_reconstruction_apart_from_shuffles() -> None:
    from facelink.session import session_settings

    local = session_settings(load_config("local"))
    assert local["spark.databricks.delta.snapshotPartitions"] == "2"
    assert local["spark.sql.shuffle.partitions"] == "8"
    cluster = session_settings(load_config("cluster"))
    assert cluster["spark.databricks.delta.snapshotPartitions"] == "50"
    # spark.extra still has the last word.
    extra = load_config("local", ["spark.extra={spark.databricks.delta.snapshotPartitions: '5'}"])
    assert session_settings(extra)["spark.databricks.delta.snapshotPartitions"] == "5"


def test_secrets_are_masked_and_do_not_change_the_hash() -> None:
    a = load_config("local", ["spark.extra={spark.hadoop.fs.s3a.secret.key: abc}"])
    b = load_config("local", ["spark.extra={spark.hadoop.fs.s3a.secret.key: xyz}"])
    assert masked_dict(a)["spark"]["extra"]["spark.hadoop.fs.s3a.secret.key"] == "***"
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(load_config("local", ["match.k=11"]))


def test_relative_paths_resolve_against_the_repo(tmp_path: Path) -> None:
    cfg = load_config("local", [f"lake.root={tmp_path}"])
    assert cfg.lake_root == str(tmp_path)
    assert Path(cfg.resolve(cfg.paths.jars_dir)).name == ".jars"


def test_object_store_credentials_come_only_from_the_environment(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"lake\.s3\.secret_access_key: a secret, set only by the "
                                          r"environment variable FACELINK_S3_SECRET_ACCESS_KEY"):
        load_config("local", ["lake.s3.secret_access_key=abc"])
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "base.yaml").write_text((Path(__file__).parents[1] / "conf" / "base.yaml").read_text())
    (conf / "site.yaml").write_text("lake:\n  s3:\n    access_key_id: AKIA\n")
    with pytest.raises(ConfigError, match=r"lake\.s3\.access_key_id: a secret, .*found in .*site\.yaml"):
        load_config("site", conf_dir=conf)
    with pytest.raises(ConfigError, match="static credentials need FACELINK_S3_ACCESS_KEY_ID"):
        load_config("local", ["lake.s3.credentials=static"])
    # taken as given: never parsed as YAML (0123 is not 83, "yes" is not true)
    monkeypatch.setenv("FACELINK_S3_ACCESS_KEY_ID", "0123")
    monkeypatch.setenv("FACELINK_S3_SECRET_ACCESS_KEY", "yes")
    cfg = load_config("local", ["lake.s3.credentials=static", "lake.s3.endpoint=127.0.0.1:9000"])
    assert (cfg.lake.s3.access_key_id, cfg.lake.s3.secret_access_key) == ("0123", "yes")
    masked = masked_dict(cfg)["lake"]["s3"]
    assert masked["access_key_id"] == masked["secret_access_key"] == masked["session_token"] == "***"
    assert "yes" not in repr(cfg)
    assert cfg.with_overrides(["match.k=3"]).lake.s3 == cfg.lake.s3


def test_object_store_endpoint_is_host_and_port() -> None:
    with pytest.raises(ConfigError, match=r"lake\.s3\.endpoint: expected host"):
        load_config("local", ["lake.s3.endpoint=http://127.0.0.1:9000"])
