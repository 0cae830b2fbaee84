"""Free loopback ports for throwaway stacks (the test suite, benchmarks)."""

from __future__ import annotations

import random
import socket

# Keys of every port a stack listens on, besides the replicas' block.
PORT_KEYS = (
    "PREFECT_PORT",
    "POSTGRES_PORT",
    "PREFECT_REDIS_MESSAGING_PORT",
    "PGADMIN_PORT",
    "ARDM_PORT",
    "GRAFANA_PORT",
    "PROMETHEUS_PORT",
    "ALERTMANAGER_PORT",
    "NGINX_STATUS_PORT",
    "POSTGRES_EXPORTER_PORT",
    "REDIS_EXPORTER_PORT",
    "NGINX_EXPORTER_PORT",
    "NGINX_LOG_EXPORTER_PORT",
    "PREFECT_EXPORTER_PORT",
)


def port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def ephemeral_floor() -> int:
    """Lowest port the kernel hands out to outgoing connections: a listener port
    above it can be taken by a client socket between a check and the bind."""
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_values(replicas: int) -> dict[str, str]:
    """PORT_KEYS and PREFECT_API_FIRST_PORT set to one block of free ports."""
    rng = random.Random()
    needed = len(PORT_KEYS) + replicas
    for _ in range(200):
        base = rng.randrange(10000, ephemeral_floor() - needed, 10)
        block = list(range(base, base + needed))
        if all(port_free(p) for p in block):
            values = dict(zip(PORT_KEYS, map(str, block), strict=False))
            values["PREFECT_API_FIRST_PORT"] = str(block[len(PORT_KEYS)])
            return values
    raise RuntimeError("no block of free ports found")
