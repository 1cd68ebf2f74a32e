# facelink: `make setup` installs everything on a fresh machine, `make test` runs the suite.
PY := .venv/bin/python
ENV ?= local
SAMPLE ?= sample
SIZE ?= small

.PHONY: help setup test test-all lint sample-data demo bench dist airflow-setup airflow-test cluster-test clean

help:
	@echo "make setup        install the virtualenv, pinned packages and Delta jars (needs Python 3.11, Java 17+, Maven)"
	@echo "make test         run the test suite"
	@echo "make lint         ruff and mypy"
	@echo "make sample-data  build the demo archive from lfw_dev (SIZE=small|full)"
	@echo "make demo         run every pipeline stage end to end on the sample archive"
	@echo "make bench        run the benchmarks; results in bench/results/"

setup:
	bash scripts/setup.sh

test:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check facelink jobs udfs schemas tests bench dags
	$(PY) -m mypy

sample-data:
	$(PY) -m facelink.sample --out $(SAMPLE) --size $(SIZE)

demo: sample-data
	$(PY) -m facelink.nightly --env $(ENV) --sample $(SAMPLE)

bench:
	$(PY) -m bench.run_all

clean:
	rm -rf lake sample build dist bench/results/*.json bench/results/*.png
