"""A flow with several tasks and log lines; prints its flow-run id and state as JSON.

Usage: python etl.py [N_TASKS]
"""

import json
import sys

from prefect import flow, get_run_logger, task


@task
def square(x: int) -> int:
    get_run_logger().info("squaring %s", x)
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow(name="e2e-etl")
def etl(n: int) -> int:
    logger = get_run_logger()
    logger.info("start with %s tasks", n)
    values = [square(i) for i in range(n)]
    result = total(values)
    logger.warning("finished: total=%s", result)
    return result


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    state = etl(n, return_state=True)
    print(
        json.dumps(
            {
                "flow_run_id": str(state.state_details.flow_run_id),
                "state": state.type.value,
                "result": state.result(raise_on_failure=False),
                "tasks": n + 1,
            }
        )
    )
