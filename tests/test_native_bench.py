"""`prefectstack bench` on the running native stack: a short run reports every
figure, side by side with a stock Prefect server, and leaves no flow run behind."""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prefectstack.bench import http_load
from prefectstack.bench.errors import BenchError
from prefectstack.localports import free_port

from bench_figures import assert_bench_runs_deleted, assert_complete, run_short_bench
from conftest import PREFECTSTACK, PRIVATE_CWD


def test_short_bench_reports_every_figure_and_cleans_up(stack):
    figures = run_short_bench(stack, "--compare-stock")
    assert_complete(figures, stock=True)
    assert figures["machine"]["mode"] == "native"
    assert_bench_runs_deleted(stack)


def test_bench_refuses_a_stack_that_does_not_answer(stack, tmp_path):
    # The stack's .env with the load balancer on a port nothing listens on: the
    # bench must say so, not hang or trace back.
    lines = stack.env_file.read_text().splitlines()
    port = f"PREFECT_PORT={free_port()}"
    env = stack.env_file.parent / "bench-no-lb.env"
    env.write_text("\n".join(port if x.startswith("PREFECT_PORT=") else x for x in lines) + "\n")
    result = subprocess.run(
        [*PREFECTSTACK, "bench", "--env-file", str(env), "--json"],
        capture_output=True, text=True, timeout=120, cwd=PRIVATE_CWD, check=False,
    )  # fmt: skip
    env.unlink()
    assert result.returncode == 1, result.stdout
    assert "does not answer" in result.stderr, result.stderr


def test_a_window_in_which_no_request_completed_is_an_error_not_a_figure():
    """wrk counts only completed requests: against a server slower than the window
    it reports 0 requests, which the bench must not print as 0 requests/s."""
    answered = threading.Event()

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self):
            answered.wait(5)  # longer than the window; released when the test ends
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(BenchError, match="completed within the 1 s window"):
            http_load.measure(url, "u:p", http_load.Request("health", "GET", "/"),
                              http_load.Load(duration_s=1, connections=1, threads=1))  # fmt: skip
    finally:
        answered.set()
        server.shutdown()
        server.server_close()
