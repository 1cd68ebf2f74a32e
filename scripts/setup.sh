#!/usr/bin/env bash
# Install everything facelink needs on a fresh machine: a virtualenv with the pinned Python packages, the
# Delta Lake jars and the s3a jars (fetched with Maven into .jars/, so Spark never downloads at run time), and
# the S3-compatible server of the object-store tests (built with Go into .tools/).
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
command -v go >/dev/null 2>&1 || die "Go 1.25+ is required to build the S3 server of the object-store tests (https://go.dev/dl/)"

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

# s3a (lake.root=s3a://...): hadoop-aws 3.5.0 (pyspark 4.2.0 ships hadoop-client-api/runtime 3.5.0) and the AWS
# SDK v2 modules it uses, at the version Hadoop 3.5.0 was built with, in .jars/s3a/: a session adds them only
# when the lake or an ingest source is on s3a (facelink.session.s3a_jars). scripts/s3a-jars.pom.xml names them
# and leaves out what pyspark already ships (netty, slf4j, httpclient, commons-codec/logging).
if ! ls .jars/s3a/hadoop-aws-*.jar >/dev/null 2>&1; then
  rm -rf .jars/s3a.tmp
  mvn -q -B -f scripts/s3a-jars.pom.xml dependency:copy-dependencies -DoutputDirectory="$PWD/.jars/s3a.tmp" >/dev/null \
    || die "could not fetch org.apache.hadoop:hadoop-aws and the AWS SDK jars with Maven (scripts/s3a-jars.pom.xml)"
  mv .jars/s3a.tmp .jars/s3a
  echo "setup: s3a jars in .jars/s3a/ ($(ls .jars/s3a | wc -l) files, $(du -sh .jars/s3a | cut -f1))"
fi

# The S3-compatible server of the object-store tests (tests/s3_server.py): Versity S3 Gateway (Apache-2.0), S3 over
# a plain folder, built from source with the Go module proxy (about 3 minutes on 2 cores, an 84 MB binary). The Go
# caches live under .tools/go and are removed after the build; a binary of the pinned version is left alone.
VERSITYGW_VERSION=v1.8.0
if ! [ -x .tools/bin/versitygw ] || [ "$(.tools/bin/versitygw --version 2>/dev/null | awk '/^Version/ {print $3}')" != "$VERSITYGW_VERSION" ]; then
  echo "setup: building versitygw $VERSITYGW_VERSION into .tools/bin (a few minutes)"
  mkdir -p .tools/bin
  (export GOPATH="$PWD/.tools/go" GOCACHE="$PWD/.tools/go/cache" GOMODCACHE="$PWD/.tools/go/mod" GOBIN="$PWD/.tools/bin" \
          GOFLAGS="-modcacherw -buildvcs=false -trimpath" GOTOOLCHAIN=local
   go install -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION" \
     "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION") >.tools/versitygw-build.log 2>&1 \
    || { tail -n 30 .tools/versitygw-build.log >&2; die "could not build github.com/versity/versitygw $VERSITYGW_VERSION with Go (.tools/versitygw-build.log)"; }
  rm -rf .tools/go
  echo "setup: versitygw $VERSITYGW_VERSION in .tools/bin"
fi

.venv/bin/python - <<'PY'
import faiss, onnxruntime, cv2, pyspark, delta, great_expectations, pandas, pyarrow
print("setup: ok: pyspark", pyspark.__version__, "| pandas", pandas.__version__, "| onnxruntime",
      onnxruntime.__version__, "| faiss", faiss.__version__, "| great_expectations", great_expectations.__version__)
PY
