#!/usr/bin/env bash
# Build what spark-submit ships to a cluster, under dist/ (see docs/running.md):
#   dist/facelink.zip           the facelink, jobs, udfs and schemas packages, for --py-files
#   dist/conf/*.yaml            the configuration files (client mode reads them with --conf-dir dist/conf)
#   dist/conf.tar.gz            the same files at the archive's top level, for --archives dist/conf.tar.gz#conf
#                               in cluster deploy mode (the driver then finds ./conf in its working folder)
#   dist/facelink-env.tar.gz    a packed virtualenv for executors (venv-pack), for
#                               --archives dist/facelink-env.tar.gz#environment
#                               --conf spark.pyspark.python=./environment/bin/python
#
# Usage: scripts/dist.sh [zip|env|all]      (default all; `zip` builds the zip and conf only, in a second)
#        DIST=/other/folder scripts/dist.sh zip   (write somewhere else than dist/, e.g. from a test)
#
# The executors' virtualenv is built fresh in build/facelink-env from pyproject's runtime dependencies at
# the versions of requirements.lock (no test or lint tools) with facelink installed as a wheel, because
# venv-pack refuses editable installs. pyspark's jars (about 460 MB) are left out: executors run the
# cluster's own Spark JVM. venv-pack does not copy the interpreter: bin/python links to the base Python
# ($PYTHON's prefix, or PYTHON_PREFIX), which must exist at that path on every executor node.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
PY=${PY:-.venv/bin/python}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV_PACK_VERSION=${VENV_PACK_VERSION:-0.2.0}
ENV_DIR=build/facelink-env
DIST=${DIST:-dist}
export DIST
die() { echo "dist: $*" >&2; exit 1; }
case $what in zip|env|all) ;; *) die "usage: scripts/dist.sh [zip|env|all]" ;; esac
[ -x "$PY" ] || die "no $PY: run \`make setup\` first"

build_zip() {
  mkdir -p "$DIST"
  # Sorted entries and a fixed timestamp: the same sources give a byte-identical zip.
  "$PY" - <<'PY'
import os
import zipfile
from pathlib import Path

PACKAGES = ("facelink", "jobs", "udfs", "schemas")
out = Path(os.environ["DIST"]) / "facelink.zip"
tmp = out.with_suffix(".zip.tmp")
files = sorted(
    p for pkg in PACKAGES for p in Path(pkg).rglob("*")
    if p.is_file() and p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts
)
missing = [pkg for pkg in PACKAGES if not Path(pkg, "__init__.py").is_file()]
if missing:
    raise SystemExit(f"dist: packages without __init__.py: {missing}")
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
    for path in files:
        info = zipfile.ZipInfo(path.as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, path.read_bytes())
tmp.replace(out)
print(f"dist: {out} ({len(files)} files, {out.stat().st_size // 1024} KiB)")
PY
  rm -rf "$DIST/conf" && mkdir -p "$DIST/conf" && cp conf/*.yaml "$DIST/conf/"
  (cd conf && tar -czf - --sort=name --mtime=1980-01-01 --owner=0 --group=0 --numeric-owner ./*.yaml) \
    >"$DIST/conf.tar.gz.tmp" && mv "$DIST/conf.tar.gz.tmp" "$DIST/conf.tar.gz"
  echo "dist: $DIST/conf/ and $DIST/conf.tar.gz ($(ls conf/*.yaml | wc -l) files)"
}

build_env() {
  [ -f requirements.lock ] || die "no requirements.lock"
  rm -rf "$ENV_DIR"
  "$PYTHON" -m venv "$ENV_DIR"
  "$ENV_DIR/bin/python" -m pip install --quiet --upgrade pip
  # Runtime dependencies only, pinned by the lock file; facelink itself as a regular (non-editable) wheel.
  "$ENV_DIR/bin/python" -m pip install --quiet -c requirements.lock . "venv-pack==$VENV_PACK_VERSION" \
    >build/facelink-env.log 2>&1 || { tail -30 build/facelink-env.log >&2; die "pip install into $ENV_DIR failed"; }
  rm -rf build/lib build/bdist.*  # setuptools' in-tree build leftovers
  local prefix_args=()
  [ -n "${PYTHON_PREFIX:-}" ] && prefix_args=(--python-prefix "$PYTHON_PREFIX")
  mkdir -p "$DIST"
  "$ENV_DIR/bin/venv-pack" --quiet --force -p "$ENV_DIR" -o "$DIST/facelink-env.tar.gz" --compress-level 1 \
    --exclude 'lib/python*/site-packages/pyspark/jars/*' "${prefix_args[@]}"
  chmod 644 "$DIST/facelink-env.tar.gz"
  echo "dist: $DIST/facelink-env.tar.gz ($(du -m "$DIST/facelink-env.tar.gz" | cut -f1) MB)"
}

case $what in
  zip) build_zip ;;
  env) build_env ;;
  all) build_zip; build_env ;;
esac
