"""`prefectstack bench` on the running native stack: a short run reports every
figure, side by side with a stock Prefect server, and leaves no flow run behind."""

from __future__ import annotations

import subprocess

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
