"""The listening sockets of the servers a test starts, to check that they bind to the loopback address only.

Spark's driver, master, workers, executors and web UIs each open a port; the tests run them on 127.0.0.1
(``SPARK_LOCAL_IP``, ``--host``, ``spark.driver.bindAddress`` in ``conf/test.yaml``), and these helpers read
what the operating system says each process of a tree listens on, so a server bound to every interface
(``0.0.0.0``, ``::``) or to an outside address fails the test that started it.
"""

from __future__ import annotations

import ipaddress

import psutil


def listening(pid: int) -> set[tuple[str, int]]:
    """``(address, port)`` of every TCP socket in LISTEN state held by ``pid`` or any of its descendants.

    Processes that exit while they are being read are left out.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    found: set[tuple[str, int]] = set()
    for proc in procs:
        try:
            conns = proc.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        found |= {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return found


def off_loopback(addresses: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """The addresses of ``addresses`` that are not loopback (``0.0.0.0`` and ``::`` included)."""
    return {(ip, port) for ip, port in addresses if not is_loopback(ip)}


def is_loopback(ip: str) -> bool:
    """Whether ``ip`` is a loopback address; a JVM's IPv6 socket shows 127.0.0.1 as ``::ffff:127.0.0.1``."""
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
