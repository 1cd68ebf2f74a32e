"""Servers started by the tests listen on 127.0.0.1 only: the helpers, and the suite's own SparkSession."""

from __future__ import annotations

from pyspark.sql import SparkSession

from tests.listeners import listening, off_loopback


def test_off_loopback_keeps_every_address_but_loopback() -> None:
    addresses = {("0.0.0.0", 1), ("::", 2), ("10.1.2.3", 3), ("fe80::1%eth0", 4), ("127.0.0.1", 5), ("::1", 6),
                 ("::ffff:127.0.0.1", 7), ("::ffff:10.1.2.3", 8)}
    assert off_loopback(addresses) == {("0.0.0.0", 1), ("::", 2), ("10.1.2.3", 3), ("fe80::1%eth0", 4),
                                       ("::ffff:10.1.2.3", 8)}


def test_the_suites_spark_session_listens_on_loopback_only(spark: SparkSession) -> None:
    jvm_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    ports = listening(jvm_pid)
    assert ports, "the driver JVM listens on nothing: its RPC endpoint should be found"
    assert off_loopback(ports) == set(), f"the driver JVM listens off loopback: {sorted(ports)}"
