"""The native stack's web UIs in a real browser (Debian's Chromium through
Playwright), over plain HTTP on the session's stack and over TLS on the second
stack (a self-signed certificate, whose CA the browser and the Python clients
trust); and what the TLS listener offers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
import pytest

from browser import (
    browser_fixture,  # noqa: F401 (the `browser` fixture)
    check_pgadmin,
    check_prefect_ui,
    check_redis_ui,
    chromium,
    playwright_fixture,  # noqa: F401 (the `playwright` fixture)
)
from conftest import FLOWS


def test_prefect_ui_in_a_browser(stack, browser, client_home):
    check_prefect_ui(browser, stack, client_home, "native-http")


def test_pgadmin_in_a_browser(stack, browser):
    check_pgadmin(browser, f"http://127.0.0.1:{stack.env['PGADMIN_PORT']}", stack.env, "native")


def test_redis_ui_in_a_browser(stack, browser):
    check_redis_ui(browser, f"http://127.0.0.1:{stack.env['ARDM_PORT']}", stack.env, "native")


# --- TLS -------------------------------------------------------------------------------


@pytest.fixture()
def tls_stack(second_stack):
    """The second native stack (conftest), which has TLS_SELF_SIGNED=true."""
    assert second_stack.env["TLS_SELF_SIGNED"] == "true"
    return second_stack


def test_prefect_ui_over_tls_trusting_the_stack_ca(tls_stack, playwright, client_home):
    assert tls_stack.lb.startswith("https://")
    with chromium(playwright, trust=tls_stack.tls_ca) as b:
        check_prefect_ui(b, tls_stack, client_home, "native-tls")


def test_plain_http_is_redirected_and_only_tls_1_2_and_1_3_are_spoken(tls_stack):
    port = tls_stack.env["PREFECT_PORT"]
    plain = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10)
    assert plain.status_code == 301
    assert plain.headers["location"] == f"https://127.0.0.1:{port}/api/health"

    def handshake(version: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", version,
             "-CAfile", str(tls_stack.tls_ca), "-verify_return_error"],
            input="", capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    for version in ("-tls1", "-tls1_1"):
        refused = handshake(version)
        assert refused.returncode != 0 and "Cipher is (NONE)" in refused.stdout, version
    for version, protocol in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        accepted = handshake(version)
        assert accepted.returncode == 0, accepted.stderr
        assert f"New, {protocol}, Cipher is" in accepted.stdout
        assert "Verify return code: 0 (ok)" in accepted.stdout
    # The UI is told to call the API over https.
    ui = httpx.get(f"{tls_stack.lb}/ui-settings", verify=str(tls_stack.tls_ca), timeout=10)
    assert ui.json()["api_url"] == f"https://127.0.0.1:{port}/api"


def test_client_config_hands_clients_the_stack_ca(tls_stack):
    out = tls_stack.cli("client-config").stdout
    assert f"export PREFECT_API_SSL_CERT_FILE={tls_stack.tls_ca}" in out
    assert f"export PREFECT_API_URL={tls_stack.lb}/api" in out


WORKER_FLOW = textwrap.dedent("""\
    import sys

    from prefect import flow

    pool, source = sys.argv[1], sys.argv[2]
    deployment = flow.from_source(source=source, entrypoint="etl.py:etl").deploy(
        name="over-tls", work_pool_name=pool, parameters={"n": 3}, print_next_steps=False
    )
    print(deployment)
""")


def test_a_worker_runs_a_deployment_over_tls(tls_stack, client_home):
    """A process worker polls over https and runs the flow it is given; every
    task run of that flow run is recorded."""
    env = tls_stack.client_env(client_home)
    pool = "tls-pool"
    prefect = [sys.executable, "-m", "prefect"]
    created = subprocess.run([*prefect, "work-pool", "create", pool, "--type", "process"],
                             env=env, cwd=client_home, capture_output=True, text=True)  # fmt: skip
    assert created.returncode == 0, created.stderr[-2000:]
    script = client_home / "deploy.py"
    script.write_text(WORKER_FLOW)
    deployed = subprocess.run([sys.executable, str(script), pool, str(FLOWS)], env=env,
                              cwd=client_home, capture_output=True, text=True)  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr[-2000:]
    deployment_id = deployed.stdout.strip().splitlines()[-1]
    with tls_stack.client() as client:
        run = client.post(f"/deployments/{deployment_id}/create_flow_run", json={}).json()
    worker = subprocess.run(
        [*prefect, "worker", "start", "--pool", pool, "--type", "process", "--run-once",
         "--install-policy", "never"],
        env=env, cwd=client_home, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr[-2000:]
    with tls_stack.client() as client:
        state = client.get(f"/flow_runs/{run['id']}").json()["state_type"]
        tasks = client.post("/task_runs/filter",
                            json={"flow_runs": {"id": {"any_": [run["id"]]}}}).json()  # fmt: skip
    assert state == "COMPLETED", worker.stdout[-2000:]
    assert len(tasks) == 4 and {t["state_type"] for t in tasks} == {"COMPLETED"}, tasks
