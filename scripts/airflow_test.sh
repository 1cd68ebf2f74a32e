#!/usr/bin/env bash
# The Airflow tests (pytest marker `airflow`, tests/test_dag.py), in the virtualenv of scripts/airflow_setup.sh:
#   - Airflow's DagBag loads dags/facelink_nightly.py without import errors: one SparkSubmitOperator per
#     facelink.nightly STEPS entry, wired as the steps say, templates rendered by Airflow;
#   - `airflow dags test facelink_nightly 2026-11-22` runs the whole chain (spark-submit, local[2]) on a slice
#     of the sample archive against a temporary lake and a temporary SQLite metadata DB, then again for the
#     same logical date: every table but runs and audit must be unchanged.
# Extra arguments go to pytest (e.g. -k dagbag).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .airflow-venv/bin/airflow ] || { echo "airflow-test: no .airflow-venv: run \`make airflow-setup\` first" >&2; exit 1; }
start=$(date +%s)
.venv/bin/python -m pytest -m airflow -p no:cacheprovider -q -s -ra tests/test_dag.py "$@"
echo "airflow-test: $(( $(date +%s) - start ))s"
