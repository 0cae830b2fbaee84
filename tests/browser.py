"""Debian's Chromium, headless, driven by Playwright, for the web UI tests.

Playwright's own browser download cannot run here, so it launches
/usr/bin/chromium. A stack's private CA is trusted the way a user's browser
trusts one, through an NSS database in the browser's home, not by skipping
certificate errors. A page whose check fails leaves a screenshot in
test-artifacts/ (CI keeps the folder).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from conftest import FLOWS, REPO
from test_native_e2e import poll

CHROMIUM = "/usr/bin/chromium"
# Headless on a machine without a display or a network beyond loopback.
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = REPO / "test-artifacts"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module", name="playwright")
def playwright_fixture() -> Iterator[Playwright]:
    """One Playwright per module, stopped when the module ends: while it runs, its
    sync API holds an event loop on the main thread (asyncio.run fails there)."""
    with sync_playwright() as playwright:
        yield playwright


@contextmanager
def chromium(playwright: Playwright, trust: Path | None = None) -> Iterator[Browser]:
    """A browser; TRUST is a CA certificate it trusts (as an imported authority)."""
    with tempfile.TemporaryDirectory(prefix="prefectstack-browser-") as home:
        if trust is not None:
            nssdb = Path(home) / ".pki" / "nssdb"
            nssdb.mkdir(parents=True)
            for args in (["-N", "--empty-password"],
                         ["-A", "-t", "C,,", "-n", "prefectstack", "-i", str(trust)]):  # fmt: skip
                subprocess.run(["certutil", "-d", f"sql:{nssdb}", *args], check=True)
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=ARGS, env={**os.environ, "HOME": home}
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module", name="browser")
def browser_fixture(playwright: Playwright) -> Iterator[Browser]:
    """A module's browser, trusting no private CA (plain HTTP pages)."""
    with chromium(playwright) as b:
        yield b


@contextmanager
def page(browser: Browser, name: str) -> Iterator[Page]:
    """A fresh page (own cookies and storage); a screenshot if the block fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    current = context.new_page()
    try:
        yield current
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        current.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
        raise
    finally:
        context.close()


def prefect_login(current: Page, base_url: str, auth_string: str) -> None:
    """Open the UI: its login page takes the auth string (user:password)."""
    current.goto(base_url + "/")
    current.wait_for_url(re.compile(r"/login"))
    current.get_by_placeholder("admin:pass").fill(auth_string)
    current.get_by_role("button", name="Login").click()
    current.wait_for_url(re.compile(r"/dashboard"))


def open_flow_run(current: Page, run_name: str) -> None:
    """From the dashboard to the run's page, as a user would: Runs, search, click."""
    current.get_by_role("link", name="Runs", exact=True).click()
    current.get_by_placeholder("Search by flow run name").fill(run_name)
    current.get_by_role("link", name=run_name).click()
    current.wait_for_url(re.compile(r"/runs/flow-run/"))


def expect_text(current: Page, text: str, timeout_ms: int = TIMEOUT_MS) -> None:
    expect(current.get_by_text(text).first).to_be_visible(timeout=timeout_ms)


# --- what a user does in each web UI ---------------------------------------------------


def check_prefect_ui(browser: Browser, stack, home: Path, name: str) -> None:
    """Log in through the load balancer; the run a client just made is listed, its
    page shows its task runs and logs; a log line written while the page of a
    running flow is open appears without a reload."""
    done = stack.run_flow("etl.py", "2", home=home)
    with stack.client() as client:
        run = client.get(f"/flow_runs/{done['flow_run_id']}").json()
        tasks = client.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [run["id"]]}}}
        ).json()
    with page(browser, f"{name}-prefect-ui") as current:
        prefect_login(current, stack.lb, stack.auth_string)
        expect_text(current, "Flow Runs")
        open_flow_run(current, run["name"])
        current.get_by_role("tab", name="Logs").click()
        expect_text(current, "finished: total=1")
        current.get_by_role("tab", name="Task Runs").click()
        for task in tasks:
            expect_text(current, task["name"])
        _live_log(current, stack, home)


def _live_log(current: Page, stack, home: Path) -> None:
    token = uuid.uuid4().hex[:10]
    marker = home / f"marker-{token}"
    flow = subprocess.Popen(
        [sys.executable, str(FLOWS / "live.py"), str(marker)], env=stack.client_env(home),
        cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with stack.client() as client:
            body = {"flows": {"name": {"any_": ["e2e-live"]}},
                    "flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}  # fmt: skip
            running = poll(lambda: client.post("/flow_runs/filter", json=body).json(), bool)
        assert running, "the live flow did not start"
        # The page the client itself points at ("View at .../runs/flow-run/<id>").
        current.goto(f"{stack.lb}/runs/flow-run/{running[0]['id']}")
        expect_text(current, f"waiting for marker-{token}")
        marker.write_text(token)
        expect_text(current, f"live line {token}")
        _, err = flow.communicate(timeout=120)
        assert flow.returncode == 0, err[-2000:]
    finally:
        flow.kill()


def check_pgadmin(browser: Browser, base_url: str, env: dict[str, str], name: str) -> None:
    """Log in; the stack's server is listed under the project's group, connects
    without a password prompt, and the query tool runs a query."""
    with page(browser, f"{name}-pgadmin") as current:
        current.goto(base_url + "/")
        current.locator("input[name=email]").fill(env["PGADMIN_DEFAULT_EMAIL"])
        current.locator("input[name=password]").fill(env["PGADMIN_DEFAULT_PASSWORD"])
        current.get_by_role("button", name="Login").click()
        current.get_by_text(env["PROJECT_NAME"], exact=True).dblclick()
        server = current.get_by_text(f"{env['PROJECT_NAME']} PostgreSQL", exact=True)
        databases = current.get_by_text(re.compile(r"^Databases"))
        _expand(server, databases)
        _expand(databases, current.get_by_text(env["POSTGRES_DB"], exact=True))
        current.get_by_text(env["POSTGRES_DB"], exact=True).click()
        current.get_by_role("button", name="Query Tool", exact=True).click()
        tool = current.frame_locator("iframe").last  # the query tool is a page of its own
        expect(tool.get_by_text("No data output").first).to_be_visible()
        tool.locator(".cm-content").first.click()
        current.keyboard.type("SELECT 'prefect' || 'stack' AS probe")
        current.keyboard.press("F5")
        expect(tool.get_by_text("Total rows: 1").first).to_be_visible()
        expect(tool.get_by_role("gridcell", name="prefectstack")).to_be_visible()


def _expand(node, child) -> None:
    """Open a tree node until CHILD shows: a server connects on its first opening,
    and a double-click during that is taken as opening and closing again."""
    node.click()
    for _ in range(5):
        node.dblclick()
        try:
            expect(child).to_be_visible(timeout=8000)
            return
        except AssertionError:
            continue
    expect(child).to_be_visible()


def check_redis_ui(browser: Browser, base_url: str, env: dict[str, str], name: str) -> None:
    """The UI asks for a sign-in, then shows the stack's Redis with Prefect's events."""
    with page(browser, f"{name}-redis-ui") as current:
        current.goto(base_url + "/")
        sign_in = current.get_by_role("button", name="Sign In")
        expect(sign_in).to_be_visible()
        # The dialog opens (and empties its fields) once the UI's first call is
        # refused; it focuses the user name field when it is ready.
        expect(current.locator("#signinUsername")).to_be_focused()
        expect(current.get_by_text("events (")).to_have_count(0)  # nothing before signing in
        current.locator("#signinUsername").fill(env["REDIS_UI_USER"])
        current.locator("#signinPassword").fill(env["REDIS_UI_PASSWORD"])
        sign_in.click()
        expect(sign_in).to_be_hidden()
        expect_text(current, env["PROJECT_NAME"])
        # Prefect's event stream (its consumer groups read it from the first start).
        expect(current.get_by_text(re.compile(r"^events \(\d+\)$"))).to_be_visible()
