#!/usr/bin/env bash
# Install Apache Airflow 3 with the Spark and standard providers into .airflow-venv and initialise a SQLite
# metadata database under AIRFLOW_HOME (default: .airflow-venv/home, inside the ignored virtualenv folder).
#
# Airflow lives in its own virtualenv: its pins (SQLAlchemy, pydantic, grpc...) are not the pipeline's, and
# the jobs never import it. Airflow's constraint files are served from GitHub, which CI cannot reach, so
# the three packages are pinned here instead. facelink is installed into it without dependencies: the DAG
# only imports facelink.nightly (standard library only) to read STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
AIRFLOW_VERSION=${AIRFLOW_VERSION:-3.3.2}
SPARK_PROVIDER_VERSION=${SPARK_PROVIDER_VERSION:-6.3.4}
STANDARD_PROVIDER_VERSION=${STANDARD_PROVIDER_VERSION:-1.21.0}
VENV=${AIRFLOW_VENV:-.airflow-venv}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac
export AIRFLOW_HOME=${AIRFLOW_HOME:-$VENV/home}
die() { echo "airflow-setup: $*" >&2; exit 1; }

"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 10)' 2>/dev/null \
  || die "Airflow 3 needs Python 3.10+ (found: $("$PYTHON" --version 2>&1))"

want="apache-airflow==$AIRFLOW_VERSION apache-airflow-providers-apache-spark==$SPARK_PROVIDER_VERSION"
want="$want apache-airflow-providers-standard==$STANDARD_PROVIDER_VERSION"
stamp="$VENV/.facelink-airflow"
if [ ! -x "$VENV/bin/airflow" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # shellcheck disable=SC2086  # $want is a list of requirement specifiers
  "$VENV/bin/python" -m pip install --quiet $want
  "$VENV/bin/python" -m pip install --quiet --no-deps -e . >"$VENV/facelink-install.log" 2>&1 \
    || { cat "$VENV/facelink-install.log" >&2; die "could not install facelink into $VENV"; }
  echo "$want" > "$stamp"
fi

mkdir -p "$AIRFLOW_HOME"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER=$PWD/dags
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
"$VENV/bin/airflow" db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 \
  || { tail -30 "$AIRFLOW_HOME/db-migrate.log" >&2; die "airflow db migrate failed (log: $AIRFLOW_HOME/db-migrate.log)"; }
echo "airflow-setup: ok: $("$VENV/bin/airflow" version 2>/dev/null | tail -1) in $VENV, metadata DB $AIRFLOW_HOME/airflow.db"
