"""Which ports are free: for preflight checks, and for throwaway stacks (the test
suite, benchmarks)."""

from __future__ import annotations

import random
import socket

from .settings import PORT_KEYS


def bindable(host: str, port: int, proto: str = "tcp") -> bool:
    """Whether a listener could bind host:port right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_free(port: int) -> bool:
    return bindable("127.0.0.1", port, "tcp") and bindable("127.0.0.1", port, "udp")


def ephemeral_floor() -> int:
    """Lowest port the kernel hands out to outgoing connections: a listener port
    above it can be taken by a client socket between a check and the bind."""
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """One free loopback port below the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, ephemeral_floor())
        if port_free(port):
            return port
    raise RuntimeError("no free port found")


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
