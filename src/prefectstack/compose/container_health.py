"""Health checks run inside the stack's Prefect containers (compose healthcheck).

They read the same PREFECT_* environment the Prefect process gets, so they need
no .env. Usage: python -m prefectstack.compose.container_health {api,services,exporter,worker}
Exit 0 when healthy; otherwise print the reason and exit 1.

Docker runs them every 10 s in every Prefect container, so the HTTP checks use
only the standard library: importing httpx, psycopg and redis (prefectstack.health)
costs about 0.35 s of CPU per check, a constant tenth of a core across a default
stack. Only the services check, which needs Redis, imports it.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from urllib.parse import urlparse

API_URL = "http://127.0.0.1:{port}/api/ready"
WORKER_URL = "http://127.0.0.1:{port}/health"
TIMEOUT_S = 3.0
# Loopback: never through an HTTP_PROXY the container may have for Prefect.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_ok(url: str) -> tuple[bool, str]:
    try:
        with _DIRECT.open(url, timeout=TIMEOUT_S) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        return False, f"{url}: {type(exc).__name__}: {exc}"
    return status == 200, f"{url}: HTTP {status}"


def _redis(db: int):
    from .. import health

    return health.redis_client(
        host=os.environ["PREFECT_REDIS_MESSAGING_HOST"],
        port=int(os.environ["PREFECT_REDIS_MESSAGING_PORT"]),
        password=os.environ.get("PREFECT_REDIS_MESSAGING_PASSWORD", ""),
        db=db,
    )


def check(role: str) -> tuple[bool, str]:
    """(healthy, why)."""
    if role == "api":
        port = os.environ.get("PREFECT_SERVER_API_PORT", "4200")
        return http_ok(API_URL.format(port=port))
    if role == "services":
        from .. import health

        docket_db = int(urlparse(os.environ["PREFECT_SERVER_DOCKET_URL"]).path.lstrip("/") or 0)
        probe = health.background_services_ok(
            _redis(int(os.environ.get("PREFECT_REDIS_MESSAGING_DB", "0"))),
            _redis(docket_db),
            # This container's own services process, not another replica's.
            host=socket.gethostname(),
        )
        return probe.ok, probe.detail
    if role == "exporter":
        port = os.environ.get("PREFECTSTACK_EXPORTER_PORT", "9560")
        return http_ok(f"http://127.0.0.1:{port}/metrics")
    if role == "worker":
        port = os.environ.get("PREFECT_WORKER_WEBSERVER_PORT", "8080")
        return http_ok(WORKER_URL.format(port=port))
    return False, f"unknown role {role!r}: use api, services, exporter or worker"


def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    healthy, detail = check(role)
    print(detail)
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
