"""The nightly Airflow DAG (``dags/facelink_nightly.py``).

Without Airflow: the DAG's task list, dependencies and rendered job arguments are checked through its pure
:func:`task_specs`, against :data:`facelink.nightly.STEPS` and the jobs' own parser.

With Airflow (``@pytest.mark.airflow``; in ``make test`` and ``make airflow-test``; ``make setup`` installs
``.airflow-venv``, and without it these tests fail, never skip): the real DAG is loaded by Airflow's DagBag
from ``.airflow-venv`` and its templates rendered by Airflow; then the whole DAG runs with ``airflow dags
test`` on a slice of the sample archive against a temporary lake, twice for the same logical date, and every
table but ``runs`` and ``audit`` must be unchanged by the second run.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import jinja2
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink import nightly
from facelink.cli import base_parser
from facelink.config import load_config
from jobs import calibrate
from tests.listeners import listening, off_loopback
from tests.paths import REPO_ROOT

DAG_FILE = REPO_ROOT / "dags" / "facelink_nightly.py"
AIRFLOW_VENV = REPO_ROOT / ".airflow-venv"
RUN_DATE = "2026-11-22"
#: Rows of the sample archive the end-to-end run ingests (the first ones of each manifest).
GALLERY_ROWS, PROBE_ROWS = 16, 6
#: Tables that record every run and so grow on a rerun; all others must not change.
GROWING_TABLES = ("runs", "audit")


def load_dag_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("facelink_nightly_dag", DAG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dag_module() -> ModuleType:
    return load_dag_module()


def render(template: str, params: dict[str, str], ds: str = RUN_DATE) -> str:
    """Render like Airflow: ``ds`` and ``params`` in the context, unknown names are errors."""
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(template).render(ds=ds, params=params)


def dag_params(dag_module: ModuleType, **overrides: str) -> dict[str, str]:
    params = {name: default for name, (default, _) in dag_module.DEFAULT_PARAMS.items()}
    params.update(overrides)
    return params


# --- without Airflow -------------------------------------------------------------------------------------


def test_one_task_per_step_with_the_steps_dependencies(dag_module: ModuleType) -> None:
    specs = dag_module.task_specs()
    assert [s.task_id for s in specs] == [s.task_id for s in nightly.STEPS]
    for spec, step in zip(specs, nightly.STEPS, strict=True):
        assert spec.upstream == step.upstream
        assert spec.application == f"{REPO_ROOT}/jobs/{step.job}.py"
        assert (REPO_ROOT / "jobs" / f"{step.job}.py").is_file()
        assert render(spec.py_files, dag_params(dag_module)) == f"{REPO_ROOT}/dist/facelink.zip"
        assert "delta-spark_4.2_2.13-*.jar" in spec.jars and "delta-storage-*.jar" in spec.jars


def test_rendered_arguments_are_the_steps_argv(dag_module: ModuleType) -> None:
    params = dag_params(dag_module, lake_root="/data/lake", gallery_input="/landing/{run_date}/gallery.csv",
                        operator="night shift", authority="CASE 7")
    night = nightly.params_for(RUN_DATE, f"/landing/{RUN_DATE}/gallery.csv", params["probe_input"],
                               "night shift", params["purpose"], params["screening_purpose"], "CASE 7")
    home = str(REPO_ROOT)
    for spec, step in zip(dag_module.task_specs(), nightly.STEPS, strict=True):
        rendered = [render(arg, params) for arg in spec.application_args]
        assert rendered == ["--env", "local", "--conf-dir", f"{home}/conf", "--set=spark.master=",
                            "--set=lake.root=/data/lake", *step.argv(night)]
        assert render(spec.application, params) == f"{home}/jobs/{step.job}.py"
        conf = {k: render(v, params) for k, v in spec.conf.items()}
        assert conf["spark.pyspark.python"] == f"{home}/.venv/bin/python"
        assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"


def test_rendered_arguments_parse_with_the_job_parser(dag_module: ModuleType) -> None:
    spec = dag_module.task_specs()[0]
    for lake_root, overrides in (("/data/lake", ["spark.master=", "lake.root=/data/lake"]),
                                 ("", ["spark.master="])):
        argv = [render(arg, dag_params(dag_module, lake_root=lake_root)) for arg in spec.application_args]
        args, rest = base_parser("ingest", "test").parse_known_args(argv)
        assert args.overrides == overrides
        assert args.log_level == "INFO"
        assert args.run_id == nightly.run_id(spec.task_id, RUN_DATE)
        assert rest[:1] == ["--input"]


def test_every_night_parameter_is_a_dag_param(dag_module: ModuleType) -> None:
    names = set(dag_module.night_param_names()) - {"run_date"}
    assert names <= set(dag_module.DEFAULT_PARAMS)
    assert {"operator", "purpose", "authority", "gallery_input", "probe_input", "env", "lake_root"} <= set(
        dag_module.DEFAULT_PARAMS)


CODE_PARAMS = ("facelink_home", "py_files", "driver_python", "executor_python", "archives", "jars")


def test_a_trigger_cannot_choose_what_the_tasks_execute(dag_module: ModuleType) -> None:
    """py_files, Pythons, archives, jars and the application come from the deployment: a trigger that sends
    them (Airflow merges unknown conf keys into params) changes nothing a task runs."""
    assert not set(CODE_PARAMS) & set(dag_module.DEFAULT_PARAMS)
    evil = {name: f"/tmp/evil/{name}" for name in CODE_PARAMS}
    params = dag_params(dag_module, **evil)
    for spec in dag_module.task_specs():
        rendered = [render(v, params) for v in (spec.application, spec.py_files, spec.jars, *spec.conf.values(),
                                                *spec.application_args)]
        assert not [v for v in rendered if "/tmp/evil" in v], spec.task_id
        for value in (spec.application, spec.py_files, spec.jars, *(v for k, v in spec.conf.items()
                                                                      if k != "spark.driver.memory")):
            assert "params." not in value, f"{spec.task_id}: {value} is chosen at trigger time"


def test_trigger_params_are_validated_against_the_configuration(dag_module: ModuleType, tmp_path: Path) -> None:
    import jsonschema

    schemas = dag_module.param_schemas()
    assert set(schemas) == set(dag_module.DEFAULT_PARAMS)

    def ok(name: str, value: str, found: dict[str, dict[str, object]] = schemas) -> bool:
        schema = {k: v for k, v in found[name].items() if k not in ("default", "description")}
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError:
            return False
        return True

    for name, schema in schemas.items():
        assert ok(name, str(schema["default"])), name
    assert ok("operator", "night shift") and ok("authority", "CASE 7") and ok("authority", "Art. 6(1)(e) GDPR")
    assert not ok("purpose", "erasure_request"), "dedup's purposes are audit.job_purposes.dedup"
    assert not ok("screening_purpose", "retention") and not ok("purpose", "anything")
    for bad in ("x\n--set=lake.root=/", "", " lead", "a;rm -rf /", "a" * 65, "{{ 7*7 }}"):
        assert not ok("operator", bad), bad
    assert not ok("authority", "../../etc") and not ok("authority", "x\ny")
    assert not ok("env", "../../tmp/evil") and not ok("driver_memory", "4g --conf x")
    # A site that lists its operators makes the operator param that list.
    conf = tmp_path / "conf"
    shutil.copytree(REPO_ROOT / "conf", conf)
    (conf / "site.yaml").write_text("audit:\n  operators: [alice, bob]\n")
    from facelink.config import Deployment

    site = dag_module.param_schemas(Deployment(home=str(tmp_path), env="site"))
    assert site["operator"]["enum"] == ["alice", "bob"] and ok("operator", "alice", site)
    assert not ok("operator", "mallory", site)


def test_the_deployment_file_sets_what_runs(dag_module: ModuleType, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from facelink.config import ConfigError, load_deployment

    deploy = tmp_path / "deploy.yaml"
    deploy.write_text("py_files: /opt/facelink/facelink-0.2.zip\nexecutor_python: ./environment/bin/python\n"
                      "archives: hdfs:///facelink/env.tar.gz#environment\n")
    monkeypatch.setenv("FACELINK_DEPLOY_FILE", str(deploy))
    deployment = load_deployment("/srv/facelink")
    spec = dag_module.task_specs(deployment=deployment)[0]
    assert spec.py_files == "/opt/facelink/facelink-0.2.zip"
    assert spec.conf["spark.pyspark.python"] == "./environment/bin/python"
    assert spec.conf["spark.pyspark.driver.python"] == "/srv/facelink/.venv/bin/python"
    assert spec.application == "/srv/facelink/jobs/ingest.py"
    deploy.write_text("py_file: typo.zip\n")
    with pytest.raises(ConfigError, match=r"deploy\.py_file: unknown key"):
        load_deployment("/srv/facelink")


def test_a_step_with_an_undefined_upstream_is_refused(dag_module: ModuleType,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bad = (nightly.Step("extract", "extract", (), ("no_such_task",)),)
    monkeypatch.setattr(dag_module, "STEPS", bad)
    with pytest.raises(ValueError, match="no_such_task"):
        dag_module.task_specs()


def test_importing_the_dag_starts_no_spark_and_no_numpy(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('dag', {str(DAG_FILE)!r})\n"
        "module = sys.modules['dag'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "heavy = sorted(m for m in ('pyspark', 'numpy', 'pandas', 'cv2', 'py4j') if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'tasks': len(module.task_specs())}))\n"
    )
    out = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert json.loads(out.stdout) == {"heavy": [], "tasks": len(nightly.STEPS)}


# --- with Airflow ----------------------------------------------------------------------------------------


def airflow_bin(name: str) -> str:
    path = AIRFLOW_VENV / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} missing: run `make setup` (it installs Airflow; or `make airflow-setup`)")
    return str(path)


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for Airflow commands: a fresh SQLite metadata DB, this repo's dags/, a local[2] master."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW_CONN_FACELINK_SPARK": json.dumps({"conn_type": "spark", "host": "local[2]"}),
        # spark-submit is found on PATH (provider 6.x allows no other way): the project virtualenv's.
        "PATH": f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    })
    env.pop("PYTHONPATH", None)
    migrate = subprocess.run([airflow_bin("airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    yield env


DAGBAG_PROBE = """
import json, sys
from datetime import datetime
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES=False
dag = bag.get_dag("facelink_nightly")
params = {k: v for k, v in dag.params.dump().items()}
params["lake_root"] = "/data/lake"
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "catchup": dag.catchup,
       "schedule": str(dag.schedule), "tasks": {}}
for task in dag.tasks:
    out["tasks"][task.task_id] = {
        "type": type(task).__name__, "upstream": sorted(task.upstream_task_ids), "retries": task.retries,
        "backoff": float(task.retry_exponential_backoff), "conn_id": task._conn_id,
        "args": task.render_template(task.application_args, {"ds": sys.argv[2], "params": params}),
    }
print("DAGBAG " + json.dumps(out))
"""


@pytest.mark.airflow
def test_airflow_loads_the_dag_as_specified(airflow_env: dict[str, str], tmp_path: Path) -> None:
    dag_module = load_dag_module()
    probe = tmp_path / "dagbag_probe.py"
    probe.write_text(DAGBAG_PROBE)
    out = subprocess.run([airflow_bin("python"), str(probe), str(REPO_ROOT / "dags"), RUN_DATE],
                         env=airflow_env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("DAGBAG "))
    bag = json.loads(line[len("DAGBAG "):])
    assert bag["errors"] == {}
    assert bag["catchup"] is False
    assert bag["schedule"] == dag_module.SCHEDULE
    assert set(bag["tasks"]) == {s.task_id for s in nightly.STEPS}
    params = dag_params(dag_module, lake_root="/data/lake")
    for step, spec in zip(nightly.STEPS, dag_module.task_specs(), strict=True):
        task = bag["tasks"][step.task_id]
        assert task["type"] == "SparkSubmitOperator"
        assert task["upstream"] == sorted(step.upstream)
        assert task["conn_id"] == dag_module.CONN_ID
        assert task["retries"] >= 1 and task["backoff"] > 1
        assert task["args"] == [render(a, params) for a in spec.application_args]


def sample_slice(out: Path) -> tuple[Path, Path]:
    """The first rows of the sample archive's manifests (built from lfw_dev as ``make sample-data`` does)."""
    sample = out / "sample"
    subprocess.run([sys.executable, "-m", "facelink.sample", "--out", str(sample), "--size", "small",
                    "--env", "test"], check=True, capture_output=True, cwd=REPO_ROOT)
    paths = []
    for name, rows in (("gallery.csv", GALLERY_ROWS), ("probes.csv", PROBE_ROWS)):
        with (sample / name).open() as fh:
            lines = fh.readlines()[: rows + 1]
        target = out / name
        target.write_text("".join(lines))
        paths.append(target)
    return paths[0], paths[1]


def run_dag(env: dict[str, str], conf: dict[str, str], log: Path) -> float:
    """``airflow dags test`` for :data:`RUN_DATE`; fail at the first failed task (not after its retries).

    Every 5 s the sockets that Airflow and its spark-submit drivers listen on are read: none may be off loopback.
    """
    start = time.perf_counter()
    off_loopback_seen: set[tuple[str, int]] = set()
    with log.open("w") as fh:
        proc = subprocess.Popen([airflow_bin("airflow"), "dags", "test", "facelink_nightly", RUN_DATE, "-c",
                                 json.dumps(conf)], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        while proc.poll() is None:
            time.sleep(5)
            off_loopback_seen |= off_loopback(listening(proc.pid))
            if "up_for_retry" in log.read_text():  # dags test would wait out the retry back-off
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
    text = log.read_text()
    failed = proc.returncode != 0 or "up_for_retry" in text or "new_state=failed" in text
    assert not failed, f"airflow dags test failed (exit {proc.returncode}); log {log}:\n{text[-6000:]}"
    assert not off_loopback_seen, f"airflow dags test listened off loopback: {sorted(off_loopback_seen)}"
    return time.perf_counter() - start


def table_snapshot(spark: SparkSession, lake: Path) -> dict[str, tuple[int, list[tuple]]]:
    """Per table (but the growing ones): row count and sorted keys (its TableSpec key, else all columns)."""
    from schemas import TABLES, get_spec

    snapshot = {}
    for table_dir in sorted((lake / "tables").iterdir()):
        name = table_dir.name
        if name in GROWING_TABLES:
            continue
        df = spark.read.format("delta").load(str(table_dir))
        key = list(get_spec(name).key) if name in TABLES and get_spec(name).key else df.columns
        rows = sorted(tuple(r) for r in df.select(*key).collect())
        snapshot[name] = (df.count(), rows)
    return snapshot


def record_ids(path: Path) -> set[str]:
    with path.open() as fh:
        return {row["record_id"] for row in csv.DictReader(fh)}


@pytest.mark.airflow
def test_nightly_dag_runs_end_to_end_and_a_rerun_changes_nothing(
    airflow_env: dict[str, str], spark: SparkSession, tmp_path: Path
) -> None:
    dist = tmp_path / "dist"  # a zip of its own: rebuilding one that a running driver reads breaks it
    subprocess.run(["bash", "scripts/dist.sh", "zip"], check=True, cwd=REPO_ROOT, capture_output=True,
                   env={**os.environ, "DIST": str(dist)})
    gallery, probes = sample_slice(tmp_path)
    lake = tmp_path / "lake"
    # A calibration fitted here on 300 lfw_dev photos, which the calibrate task keeps (--if-missing): fitting
    # one on all of lfw_dev inside the DAG took most of the test's time.
    seed = tmp_path / "calibration_lake"
    calibrate.run(spark, load_config("test", [f"lake.root={seed}"]), limit=300, run_id="calibrate-seed")
    shutil.copytree(seed / "calibration", lake / "calibration")
    conf = {"gallery_input": str(gallery), "probe_input": str(probes), "lake_root": str(lake),
            "env": "test", "driver_memory": "1g"}
    deploy = tmp_path / "deploy.yaml"  # the zip is the deployment's, not a trigger's
    deploy.write_text(f"py_files: {dist / 'facelink.zip'}\nenvs: [test]\n")
    airflow_env = {**airflow_env, "FACELINK_DEPLOY_FILE": str(deploy)}
    first_s = run_dag(airflow_env, conf, tmp_path / "run1.log")

    read = lambda name: spark.read.format("delta").load(str(lake / "tables" / name))  # noqa: E731
    photos, rejects, faces = read("photos"), read("rejects"), read("faces")
    ingested = {r.record_id for r in photos.select("record_id").collect()}
    ingested |= {r.record_id for r in rejects.select("record_id").collect()}
    assert ingested == record_ids(gallery) | record_ids(probes)
    assert photos.count() > 0
    with_faces = {r.photo_id for r in faces.select("photo_id").distinct().collect()}
    assert with_faces == {r.photo_id for r in photos.select("photo_id").collect()}
    dq_runs = {r.run_id for r in read("dq_results").select("run_id").distinct().collect()}
    quality_steps = [s.task_id for s in nightly.STEPS if s.job == "quality"]
    assert dq_runs == {nightly.run_id(t, RUN_DATE) for t in quality_steps}
    runs = read("runs")
    succeeded = {r.run_id for r in runs.filter(F.col("status") == "succeeded").select("run_id").collect()}
    assert succeeded == {nightly.run_id(s.task_id, RUN_DATE) for s in nightly.STEPS}
    runs_before = runs.count()
    before = table_snapshot(spark, lake)

    second_s = run_dag(airflow_env, conf, tmp_path / "run2.log")
    assert table_snapshot(spark, lake) == before
    assert read("runs").count() == runs_before + len(nightly.STEPS)
    print(f"\nairflow dags test: first run {first_s:.0f}s, rerun {second_s:.0f}s "
          f"({GALLERY_ROWS} gallery + {PROBE_ROWS} probe rows, {len(nightly.STEPS)} tasks)")
