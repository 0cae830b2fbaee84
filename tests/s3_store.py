"""An S3-compatible object store for the pgBackRest S3 repository tests: moto's
server on a free loopback port behind nginx for HTTPS, with a certificate from the
stack's own CA code. pgBackRest speaks only HTTPS to S3 and checks host names,
not IPs; nginx because moto's development server drops kept-alive TLS connections
without a close_notify, which pgBackRest 2.45 reports as an error (real stores,
like nginx, close them cleanly)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx

from prefectstack.loadbalancer import tls
from prefectstack.localports import free_port
from prefectstack.polling import poll
from prefectstack.settings import load_settings

BUCKET = "prefectstack-wal"
KEY, SECRET, REGION = "test-key", "test-secret", "us-east-1"
# An S3 repository's .env keys, but where the store is.
S3_SETTINGS = {
    "PGBACKREST_REPO_TYPE": "s3",
    "PGBACKREST_S3_BUCKET": BUCKET,
    "PGBACKREST_S3_REGION": REGION,
    "PGBACKREST_S3_KEY": KEY,
    "PGBACKREST_S3_KEY_SECRET": SECRET,
    "PGBACKREST_S3_URI_STYLE": "path",
    "PGBACKREST_S3_ENDPOINT": "s3.example.com",
}
NGINX_CONF = """
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {dir}/client-body;
    proxy_temp_path {dir}/proxy;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{moto};
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class S3Store:
    endpoint: str  # host:port, as PGBACKREST_S3_ENDPOINT takes it
    ca: Path

    def settings(self) -> dict[str, str]:
        """The .env keys of a stack whose repository is in this store."""
        return S3_SETTINGS | {"PGBACKREST_S3_ENDPOINT": self.endpoint,
                              "PGBACKREST_S3_CA_FILE": str(self.ca)}  # fmt: skip

    def client(self):
        return boto3.client(
            "s3", endpoint_url=f"https://{self.endpoint}", verify=str(self.ca),
            aws_access_key_id=KEY, aws_secret_access_key=SECRET, region_name=REGION,
        )  # fmt: skip

    def objects(self, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@contextmanager
def s3_store(directory: Path) -> Iterator[S3Store]:
    """Moto's server with a certificate for localhost, and the bucket, in DIRECTORY."""
    from conftest import make_env_file

    directory.mkdir(mode=0o755)
    files = tls.ensure_self_signed(load_settings(make_env_file(directory, TLS_SELF_SIGNED="true")))
    moto_port, port = free_port(), free_port()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, port=port, moto=moto_port,
                                      cert=files.cert, key=files.key))  # fmt: skip
    servers = [
        subprocess.Popen([str(Path(sys.executable).with_name("moto_server")),
                          "-H", "127.0.0.1", "-p", str(moto_port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["nginx", "-p", str(directory), "-c", str(conf)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]  # fmt: skip
    try:
        assert files.ca is not None
        store = S3Store(f"localhost:{port}", files.ca)

        def answers() -> bool:
            try:
                return httpx.get(f"https://{store.endpoint}/", verify=str(store.ca),
                                 timeout=2).status_code == 200  # fmt: skip
            except httpx.HTTPError:
                return False

        assert poll(answers, bool, timeout=60), "the S3 store did not start"
        store.client().create_bucket(Bucket=BUCKET)
        yield store
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
