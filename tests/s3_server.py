"""A real S3-compatible server on 127.0.0.1 for the object-store tests: Versity S3 Gateway over a temporary folder.

``make setup`` builds the server into ``.tools/bin/versitygw`` (scripts/setup.sh). :func:`running_s3_server`
starts it on a free loopback port with its own data folder and random root credentials (passed in its
environment, never on its command line), creates one bucket through the S3 API, and stops the server after,
killing its process group when it does not stop in time.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from facelink.config import Config, LakeS3Conf, load_config
from tests.paths import REPO_ROOT

VERSITYGW = REPO_ROOT / ".tools" / "bin" / "versitygw"
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10


@dataclass(frozen=True)
class S3Server:
    """A running server: where it listens, its root credentials, its bucket and its data folder."""

    host: str
    port: int
    access_key_id: str
    secret_access_key: str
    bucket: str
    data_dir: Path
    pid: int
    start_seconds: float

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def s3_conf(self) -> LakeS3Conf:
        """What ``lake.s3`` holds for this server once the configuration is loaded."""
        return LakeS3Conf(endpoint=self.endpoint, path_style_access=True, ssl=False, credentials="static",
                          access_key_id=self.access_key_id, secret_access_key=self.secret_access_key)

    def overrides(self) -> list[str]:
        """The ``--set`` overrides that point ``lake.s3`` at this server (the keys go in :meth:`env`)."""
        return [f"lake.s3.endpoint={self.endpoint}", "lake.s3.path_style_access=true", "lake.s3.ssl=false",
                "lake.s3.credentials=static"]

    def env(self) -> dict[str, str]:
        """The environment variables that carry the credentials to facelink's configuration."""
        return {"FACELINK_S3_ACCESS_KEY_ID": self.access_key_id,
                "FACELINK_S3_SECRET_ACCESS_KEY": self.secret_access_key}

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3a://{self.bucket}", *parts])

    def config(self, prefix: str, overrides: list[str] | None = None) -> Config:
        """The test configuration with ``lake.root=s3a://<bucket>/<prefix>`` on this server."""
        with pytest.MonkeyPatch.context() as mp:
            for var, value in self.env().items():
                mp.setenv(var, value)
            return load_config("test", [f"lake.root={self.uri(prefix)}", *self.overrides(), *(overrides or [])])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"versitygw exited with {proc.returncode} at start: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"versitygw did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S} s: "
                       f"{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def running_s3_server(work_dir: Path, bucket: str = "facelink-test") -> Iterator[S3Server]:
    """Start versitygw on a free port of 127.0.0.1 over ``work_dir/data``, with ``bucket`` created; stop it after.

    Fails the test with what to do when ``make setup`` has not built the server.
    """
    if not os.access(VERSITYGW, os.X_OK):
        pytest.fail(f"the S3 server of the object-store tests is missing ({VERSITYGW}): run `make setup`, "
                    "which builds it with Go", pytrace=False)
    data_dir = work_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    log = work_dir / "versitygw.log"
    port = free_port()
    key_id, secret = f"test{secrets.token_hex(8)}", secrets.token_urlsafe(24)
    env = {"PATH": os.environ.get("PATH", ""), "ROOT_ACCESS_KEY_ID": key_id, "ROOT_SECRET_ACCESS_KEY": secret}
    started = time.monotonic()
    with log.open("wb") as fh:
        proc = subprocess.Popen([str(VERSITYGW), "--port", f"127.0.0.1:{port}", "--quiet", "posix", str(data_dir)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, cwd=work_dir)
    try:
        _wait_listening(proc, port, log)
        admin = pafs.S3FileSystem(access_key=key_id, secret_key=secret, endpoint_override=f"127.0.0.1:{port}",
                                  scheme="http", region="us-east-1", allow_bucket_creation=True)
        admin.create_dir(bucket)
        yield S3Server("127.0.0.1", port, key_id, secret, bucket, data_dir, proc.pid, time.monotonic() - started)
    finally:
        _stop(proc)
