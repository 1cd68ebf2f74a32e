# facelink: `make setup` installs everything on a fresh machine, `make test` runs the suite.
PY := .venv/bin/python
ENV ?= local
SAMPLE ?= sample
SIZE ?= small

.PHONY: help setup test lint sample-data demo bench dist airflow-setup airflow-test cluster-test clean

help:
	@echo "make setup        the virtualenv with the pinned packages, the Delta and s3a jars, the test S3 server, and Airflow in .airflow-venv (needs Python 3.11, Java 17+, Maven, Go)"
	@echo "make test         the whole test suite, the Airflow and standalone-cluster tests included"
	@echo "make lint         ruff, mypy and the import rules of docs/architecture.md (scripts/check_imports.py)"
	@echo "make sample-data  build the demo archive from lfw_dev (SIZE=small|full)"
	@echo "make demo         run every pipeline stage end to end on the sample archive"
	@echo "make bench        run the benchmarks; results in bench/results/"
	@echo "make dist         dist/facelink.zip, dist/conf*, dist/facelink-env.tar.gz for spark-submit (docs/running.md)"
	@echo "make airflow-setup  Airflow 3 + Spark provider in .airflow-venv, SQLite metadata DB (part of make setup)"
	@echo "make airflow-test   only the Airflow tests: the DAG loaded by Airflow and run twice with airflow dags test"
	@echo "make cluster-test   only the cluster test: ingest, extract, index, match on a local standalone master (two workers, lake on the test S3 server) vs local mode"

setup:
	bash scripts/setup.sh
	bash scripts/airflow_setup.sh

# Every test, the `airflow`, `cluster` and `objectstore` markers included (each starts its own servers on 127.0.0.1 and stops
# them); the slowest ones are listed at the end.
test:
	$(PY) -m pytest -q --durations=12

lint:
	$(PY) -m ruff check facelink jobs udfs schemas tests bench dags scripts
	$(PY) -m mypy
	$(PY) scripts/check_imports.py

sample-data:
	$(PY) -m facelink.sample --out $(SAMPLE) --size $(SIZE)

demo: sample-data
	$(PY) -m facelink.nightly --env $(ENV) --sample $(SAMPLE)

bench:
	$(PY) -m bench.run_all

dist:
	bash scripts/dist.sh all

airflow-setup:
	bash scripts/airflow_setup.sh

airflow-test: airflow-setup
	bash scripts/airflow_test.sh

cluster-test:
	$(PY) -m pytest -m cluster -p no:cacheprovider -q -s -ra tests/test_cluster.py

clean:
	rm -rf lake sample build dist
