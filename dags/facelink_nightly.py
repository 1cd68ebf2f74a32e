"""The nightly facelink chain on Airflow 3: one ``spark-submit`` task per :data:`facelink.nightly.STEPS` entry.

Tasks, their arguments and their dependencies all come from ``STEPS``, so a new step in
``facelink/nightly.py`` needs no edit here. :func:`task_specs` turns the steps into plain
:class:`TaskSpec` values (no Airflow import, so the main test suite checks them); the module body builds
the DAG from them with ``SparkSubmitOperator`` when Airflow is importable.

Why ``SparkSubmitOperator`` rather than a ``BashOperator``: its arguments are a list (an operator's
name or a case reference with spaces needs no shell quoting), its ``spark-submit`` is killed when the
task is, and the master lives in an Airflow connection (:data:`CONN_ID`) that a site points at
``local[2]``, ``spark://host:7077``, ``yarn`` or ``k8s://...`` without touching this file. Local mode
works through a connection whose host is ``local[N]``; ``spark-submit`` must be on the worker's ``PATH``
(provider 6.x refuses a ``spark-home`` extra), e.g. the project virtualenv's ``bin``.

A trigger's parameters (:data:`DEFAULT_PARAMS`) choose data and accountability, never code: the
application, ``--py-files``, jars, Pythons and archives come from the deployment (:data:`DEPLOYMENT`,
``conf/deploy.yaml``), and the operator, purposes and authority are validated by Airflow against the
deployment's configuration (:func:`param_schemas`) before any task starts.

Each night's parameters come from Airflow's logical date (``{{ ds }}``) and the DAG params; an input
path may contain ``{run_date}``, replaced by the logical date. Run ids are derived from the task and the
date (:func:`facelink.nightly.run_id`), so a retried task or a re-run of the night replaces exactly what
it wrote. Importing this file starts no Spark and imports no NumPy: the DAG processor parses it often.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facelink import identifiers
from facelink.config import Deployment, load_config, load_deployment
from facelink.nightly import STEPS, Step, params_for

DAG_ID = "facelink_nightly"
#: The Airflow connection naming the Spark master (conn_type ``spark``, host ``local[2]`` / ``yarn`` / ...).
CONN_ID = "facelink_spark"
SCHEDULE = "0 2 * * *"  # nightly at 02:00 UTC, after the day's probe batch has landed
#: The repository this file ships in: jobs, conf, the built ``dist/`` and the Delta jars are found under it.
FACELINK_HOME = str(Path(__file__).resolve().parents[1])

#: What the tasks run (home, --py-files, jars, Pythons, archives) and which configuration validates the audit
#: params: fixed by the deployment (``conf/deploy.yaml`` or ``$FACELINK_DEPLOY_FILE``), never by a trigger.
DEPLOYMENT = load_deployment(FACELINK_HOME)

#: DAG params: name -> (default, description). Every night parameter of ``params_for`` but ``run_date``
#: must be here (the logical date supplies that one). A trigger may set these and only these; nothing here
#: names code to run (see :data:`DEPLOYMENT`), and the audit fields are validated by :func:`param_schemas`.
DEFAULT_PARAMS: dict[str, tuple[str, str]] = {
    "env": (DEPLOYMENT.env, "configuration environment: conf/<env>.yaml (one of the deployment's envs)"),
    "lake_root": ("", "lake root URI; empty: lake.root of conf/<env>.yaml (or FACELINK_LAKE_ROOT)"),
    "gallery_input": (f"{DEPLOYMENT.home}/sample/gallery.csv",
                      "gallery manifest or folder; {run_date} is replaced by the logical date"),
    "probe_input": (f"{DEPLOYMENT.home}/sample/probes.csv",
                    "the night's probe manifest or folder; {run_date} is replaced by the logical date"),
    "operator": ("airflow-nightly", "who runs the chain (audit.operator)"),
    "purpose": ("duplicate_enrolment_check", "de-duplication's purpose: one of audit.allowed_purposes"),
    "screening_purpose": ("application_screening", "matching's purpose: one of audit.allowed_purposes"),
    "authority": ("NIGHTLY-SCHEDULE", "legal authority or case reference (audit.authority)"),
    "driver_memory": ("4g", "spark.driver.memory (spark-submit sizes the driver JVM before any job code)"),
}


def param_schemas(deployment: Deployment = DEPLOYMENT) -> dict[str, dict[str, Any]]:
    """Per DAG param, its JSON Schema: Airflow validates a trigger's values against it before any task runs.

    The operator, purposes and authority are checked against the deployment environment's configuration
    (``audit.operators``, ``audit.allowed_purposes`` narrowed by ``audit.job_purposes`` of dedup and match)
    and the allow-lists of :mod:`facelink.identifiers`; each job checks them again against its own
    configuration (``facelink.lake.runs.require_accountability``).

    Raises:
        ConfigError: the deployment's configuration does not load.
    """
    cfg = load_config(deployment.env, conf_dir=f"{deployment.home}/conf")
    audit = cfg.audit

    def purposes(job: str) -> list[str]:
        own = audit.job_purposes.get(job)
        return [p for p in audit.allowed_purposes if own is None or p in own]

    schemas: dict[str, dict[str, Any]] = {}
    for name, (default, text) in DEFAULT_PARAMS.items():
        schema: dict[str, Any] = {"default": default, "type": "string", "description": text}
        if name == "env":
            schema["enum"] = sorted({deployment.env, *deployment.envs})
        elif name == "operator":
            schema.update({"enum": list(audit.operators)} if audit.operators else
                          {"pattern": identifiers.json_pattern("operator")})
        elif name == "authority":
            schema["pattern"] = identifiers.json_pattern("authority")
        elif name in ("purpose", "screening_purpose"):
            schema["enum"] = purposes("dedup" if name == "purpose" else "match")
        elif name == "driver_memory":
            schema["pattern"] = r"^[0-9]{1,4}[mMgG]$"
        schemas[name] = schema
    return schemas


#: Night parameters whose values may contain ``{run_date}`` (replaced by the logical date when rendered).
INPUT_PARAMS = ("gallery_input", "probe_input")


def night_param_names() -> tuple[str, ...]:
    """The parameters a step's arguments may name: those of :func:`facelink.nightly.params_for`."""
    return tuple(inspect.signature(params_for).parameters)


def airflow_params() -> dict[str, str]:
    """Each night parameter as the Jinja expression Airflow renders when the task runs."""
    jinja: dict[str, str] = {}
    for name in night_param_names():
        if name == "run_date":
            jinja[name] = "{{ ds }}"
        elif name in INPUT_PARAMS:
            jinja[name] = f"{{{{ params.{name} | replace('{{run_date}}', ds) }}}}"
        else:
            jinja[name] = f"{{{{ params.{name} }}}}"
    return jinja


@dataclass(frozen=True)
class TaskSpec:
    """Everything one ``SparkSubmitOperator`` needs, as plain (possibly templated) values."""

    task_id: str
    application: str
    application_args: tuple[str, ...]
    upstream: tuple[str, ...]
    py_files: str
    jars: str
    conf: dict[str, str] = field(default_factory=dict)
    name: str = ""


def spark_conf(deployment: Deployment = DEPLOYMENT) -> dict[str, str]:
    """The ``--conf`` settings of every task: the Pythons, shipped archives and Delta's SQL extension.

    Under ``spark-submit`` the driver JVM runs before any job code: its memory, its jars (``--jars``) and
    its log level must be given here. The Delta settings repeat what ``facelink.session.build_session``
    sets so that they are in force from the start. The Pythons and archives are the deployment's.
    """
    return {
        "spark.pyspark.driver.python": deployment.path(deployment.driver_python),
        "spark.pyspark.python": deployment.path(deployment.executor_python),
        "spark.archives": deployment.path(deployment.archives),
        "spark.driver.memory": "{{ params.driver_memory }}",
        "spark.log.level": "WARN",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    }


def job_args(step: Step, params: Mapping[str, str], home: str, env: str, lake_root: str) -> tuple[str, ...]:
    """A job's arguments: the common options, then the step's own (``--run-id`` and audit included).

    ``spark.master`` is emptied so that the master is the one ``spark-submit`` was given (the Airflow
    connection's): otherwise ``build_session`` would apply ``conf/<env>.yaml``'s, e.g. ``local[*]``.
    """
    return ("--env", env, "--conf-dir", f"{home}/conf", "--set=spark.master=", lake_root, *step.argv(params))


def task_specs(
    params: Mapping[str, str] | None = None,
    deployment: Deployment = DEPLOYMENT,
    env: str = "{{ params.env }}",
    lake_root_arg: str = (
        # An empty lake_root leaves lake.root to the configuration; `--log-level=INFO` (the default) is the
        # no-op that keeps the argument list's shape, since a template cannot drop a list element.
        "{{ '--set=lake.root=' ~ params.lake_root if params.lake_root else '--log-level=INFO' }}"
    ),
) -> list[TaskSpec]:
    """One :class:`TaskSpec` per step of :data:`facelink.nightly.STEPS`, in the chain's order.

    Args:
        params: night parameters (``run_date``, inputs, audit fields); default: Airflow's Jinja for each.
        deployment: home, ``--py-files``, jars and Pythons of every task.
        env: the configuration environment; default: the ``env`` DAG param.
        lake_root_arg: one argument that sets the lake root or does nothing.

    Raises:
        ValueError: a step names an unknown upstream task or a job with no ``jobs/<job>.py``.
    """
    night = airflow_params() if params is None else dict(params)
    home = deployment.home
    known: set[str] = set()
    specs = []
    for step in STEPS:
        unknown = [u for u in step.upstream if u not in known]
        if unknown:
            raise ValueError(f"step {step.task_id}: upstream {unknown} not defined before it in STEPS")
        if not (Path(FACELINK_HOME) / "jobs" / f"{step.job}.py").is_file():
            raise ValueError(f"step {step.task_id}: no jobs/{step.job}.py in {FACELINK_HOME}")
        known.add(step.task_id)
        specs.append(TaskSpec(
            task_id=step.task_id,
            application=f"{home}/jobs/{step.job}.py",
            application_args=job_args(step, night, home, env, lake_root_arg),
            upstream=step.upstream,
            py_files=deployment.path(deployment.py_files),
            jars=",".join(deployment.path(jar) for jar in deployment.jars),
            conf=spark_conf(deployment),
            name=f"facelink-{step.task_id}",
        ))
    return specs


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "facelink",
    "retries": 3,
    "retry_delay": dt.timedelta(minutes=5),
    "retry_exponential_backoff": 2.0,  # 5, 10, 20 minutes
    "max_retry_delay": dt.timedelta(hours=1),
    "execution_timeout": dt.timedelta(hours=6),
}


def build_dag() -> Any:
    """The Airflow DAG: one ``SparkSubmitOperator`` per :class:`TaskSpec`, wired by ``upstream``."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
    from airflow.sdk import DAG, Param

    with DAG(
        dag_id=DAG_ID,
        description=("facelink nightly chain: ingest, extract, index, dedup, match, quality gates, report "
                     "(facelink/nightly.py STEPS)"),
        schedule=SCHEDULE,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,  # nights write the same tables; one at a time keeps each run's reads stable
        dagrun_timeout=dt.timedelta(hours=12),
        default_args=DEFAULT_ARGS,
        params={name: Param(**schema) for name, schema in param_schemas().items()},
        tags=["facelink"],
        doc_md=__doc__,
    ) as dag:
        tasks = {}
        for spec in task_specs():
            tasks[spec.task_id] = SparkSubmitOperator(
                task_id=spec.task_id,
                conn_id=CONN_ID,
                application=spec.application,
                application_args=list(spec.application_args),
                py_files=spec.py_files,
                jars=spec.jars,
                conf=dict(spec.conf),
                name=spec.name,
            )
            for upstream in spec.upstream:
                tasks[upstream] >> tasks[spec.task_id]
    return dag


if importlib.util.find_spec("airflow") is not None:  # absent in the pipeline's own virtualenv
    dag = build_dag()
