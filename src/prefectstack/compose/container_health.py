"""Health checks run inside the stack's Prefect containers (compose healthcheck).

They read the same PREFECT_* environment the Prefect process gets, so they need
no .env. Usage: python -m prefectstack.compose.container_health {api,services,exporter,worker}
Exit 0 when healthy; otherwise print the reason and exit 1.
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlparse

from .. import health

API_URL = "http://127.0.0.1:{port}/api/ready"
WORKER_URL = "http://127.0.0.1:{port}/health"


def _redis(db: int):
    return health.redis_client(
        host=os.environ["PREFECT_REDIS_MESSAGING_HOST"],
        port=int(os.environ["PREFECT_REDIS_MESSAGING_PORT"]),
        password=os.environ.get("PREFECT_REDIS_MESSAGING_PASSWORD", ""),
        db=db,
    )


def check(role: str) -> health.Probe:
    if role == "api":
        port = os.environ.get("PREFECT_SERVER_API_PORT", "4200")
        return health.http_ok(API_URL.format(port=port))
    if role == "services":
        docket_db = int(urlparse(os.environ["PREFECT_SERVER_DOCKET_URL"]).path.lstrip("/") or 0)
        return health.background_services_ok(
            _redis(int(os.environ.get("PREFECT_REDIS_MESSAGING_DB", "0"))),
            _redis(docket_db),
            # This container's own services process, not another replica's.
            host=socket.gethostname(),
        )
    if role == "exporter":
        port = os.environ.get("PREFECTSTACK_EXPORTER_PORT", "9560")
        return health.http_ok(f"http://127.0.0.1:{port}/metrics")
    if role == "worker":
        port = os.environ.get("PREFECT_WORKER_WEBSERVER_PORT", "8080")
        return health.http_ok(WORKER_URL.format(port=port))
    return health.Probe(False, f"unknown role {role!r}: use api, services, exporter or worker")


def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    probe = check(role)
    print(probe.detail)
    sys.exit(0 if probe else 1)


if __name__ == "__main__":
    main()
