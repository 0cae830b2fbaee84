"""pgAdmin and the Redis web UI of the native stack: password-protected, and
preconnected to the stack's PostgreSQL and Redis."""

from __future__ import annotations

import re
from contextlib import contextmanager

import httpx
import pytest


@pytest.fixture()
def pgadmin_url(stack):
    if "pgadmin" not in stack.status():
        pytest.fail("pgAdmin is not part of the stack: run scripts/install_native.sh")
    return f"http://127.0.0.1:{stack.env['PGADMIN_PORT']}"


@contextmanager
def pgadmin_login(base: str, email: str, password: str):
    with httpx.Client(base_url=base, timeout=30) as client:
        token = re.search(r'"csrfToken": "([^"]+)"', client.get("/login").text).group(1)
        client.post(
            "/authenticate/login",
            data={
                "csrf_token": token,
                "email": email,
                "password": password,
                "internal_button": "Login",
            },
        )
        yield client


def test_pgadmin_requires_login(pgadmin_url):
    resp = httpx.get(f"{pgadmin_url}/browser/")
    assert resp.status_code == 302
    assert "/login" in resp.headers["location"]


def test_pgadmin_rejects_a_wrong_password(stack, pgadmin_url):
    with pgadmin_login(pgadmin_url, stack.env["PGADMIN_DEFAULT_EMAIL"], "wrong") as client:
        assert client.get("/browser/").status_code == 302


def test_pgadmin_has_the_stack_postgres_preregistered_and_connects(stack, pgadmin_url):
    env = stack.env
    with pgadmin_login(
        pgadmin_url, env["PGADMIN_DEFAULT_EMAIL"], env["PGADMIN_DEFAULT_PASSWORD"]
    ) as c:
        assert c.get("/browser/").status_code == 200
        js = c.get("/browser/js/utils.js").text
        headers = {
            "X-pgA-CSRFToken": re.search(r"pgAdmin\['csrf_token'\] = '([^']+)'", js).group(1)
        }
        groups = c.get("/browser/server_group/nodes/", headers=headers).json()["data"]
        group = next(g["_id"] for g in groups if g["label"] == env["PROJECT_NAME"])
        servers = c.get(f"/browser/server/nodes/{group}/", headers=headers).json()["result"]
        assert [s["label"] for s in servers] == [f"{env['PROJECT_NAME']} PostgreSQL"]
        server = servers[0]["_id"]
        # Connects with the preloaded pgpass: no password prompt.
        connect = c.post(f"/browser/server/connect/{group}/{server}", headers=headers, json={})
        assert connect.status_code == 200, connect.text
        dbs = c.get(f"/browser/database/nodes/{group}/{server}/", headers=headers).json()["data"]
        assert env.get("POSTGRES_DB", "prefect") in {d["label"] for d in dbs}


def test_redis_ui_requires_sign_in_and_reaches_redis(stack):
    if "redis-ui" not in stack.status():
        pytest.fail("the Redis web UI is not part of the stack: run scripts/install_native.sh")
    base = f"http://127.0.0.1:{stack.env['ARDM_PORT']}"
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/apiv2/server/info").status_code == 401
        bad = client.post("/signin", json={"username": "admin", "password": "wrong"}).json()
        assert bad["ok"] is False
        good = client.post(
            "/signin", json={"username": "admin", "password": stack.env["REDIS_UI_PASSWORD"]}
        ).json()
        assert good["ok"] is True
        info = client.get(
            "/apiv2/server/info", headers={"Authorization": f"Bearer {good['bearerToken']}"}
        )
        assert info.status_code == 200
        assert "Redis version" in info.text
        assert '"disabled":true' not in info.text.replace(" ", "")
