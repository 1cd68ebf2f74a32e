#!/usr/bin/env bash
# Install everything facelink needs on a fresh machine: a virtualenv with the pinned Python packages and
# the Delta Lake jars (fetched with Maven into .jars/, so Spark never downloads at run time).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
die() { echo "setup: $*" >&2; exit 1; }

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || die "Python 3.11 is required (found: $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11"
command -v java >/dev/null 2>&1 || die "Java 17+ is required by Spark 4: install OpenJDK 17 (apt-get install openjdk-17-jdk-headless)"
JAVA_MAJOR=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
[ "${JAVA_MAJOR%%.*}" -ge 17 ] 2>/dev/null || die "Java 17+ is required by Spark 4 (found $JAVA_MAJOR)"
command -v mvn >/dev/null 2>&1 || die "Maven is required to fetch the Delta Lake jars (apt-get install maven)"

# Headless Chromium: the report test opens the HTML report in a real browser and checks its thumbnails.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
   && ! command -v google-chrome >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's chromium (headless browser for the report test)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || die "could not install chromium with apt-get"
  else
    die "a headless Chromium is required by the report test: install the chromium package (apt-get install chromium)"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.lock
.venv/bin/python -m pip install --quiet --no-deps -e .
# Models prepared from upstream files (SFace: int8 folded into float32) go to paths.prepared_models_dir
# (./.models); each prepared file's sha256 is checked against the registry.
.venv/bin/python -m facelink.registry prepare --env local \
  || die "could not prepare the registry's prepared models (are the upstream files in paths.models_dir, ../shared/models?)"

# Delta Lake jars for Spark 4.2 / Scala 2.13. 4.4.1 matches the delta-spark Python package; Maven Central
# has served only 4.4.0 of this artifact here, so fall back to it (same Delta protocol and Python API).
mkdir -p .jars
if ! ls .jars/delta-spark_4.2_2.13-*.jar >/dev/null 2>&1 || ! ls .jars/delta-storage-*.jar >/dev/null 2>&1; then
  for v in ${DELTA_JAR_VERSIONS:-4.4.1 4.4.0}; do
    if mvn -q -U dependency:copy -Dartifact="io.delta:delta-spark_4.2_2.13:$v" -DoutputDirectory=.jars >/dev/null 2>&1 \
       && mvn -q dependency:copy -Dartifact="io.delta:delta-storage:$v" -DoutputDirectory=.jars >/dev/null 2>&1; then
      echo "setup: Delta Lake jars $v in .jars/"
      break
    fi
    rm -f .jars/delta-*.jar
  done
fi
ls .jars/delta-spark_4.2_2.13-*.jar .jars/delta-storage-*.jar >/dev/null 2>&1 \
  || die "could not fetch io.delta:delta-spark_4.2_2.13 with Maven"
.venv/bin/python - <<'PY'
import faiss, onnxruntime, cv2, pyspark, delta, great_expectations, pandas, pyarrow
print("setup: ok: pyspark", pyspark.__version__, "| pandas", pandas.__version__, "| onnxruntime",
      onnxruntime.__version__, "| faiss", faiss.__version__, "| great_expectations", great_expectations.__version__)
PY
