"""A flow that logs a line, waits (at most two minutes) until a marker file
exists, then logs a second line that names the marker and finishes; it prints
its flow-run id and state as JSON. Lets a test open the run's page while it
runs and see a log line arrive.

Usage: python live.py MARKER_FILE
"""

import json
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task


@task
def wait_for(marker: str) -> bool:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if Path(marker).exists():
            return True
        time.sleep(0.2)
    return False


@flow(name="e2e-live")
def live(marker: str) -> bool:
    logger = get_run_logger()
    logger.info("waiting for %s", Path(marker).name)
    seen = wait_for(marker)
    logger.info("live line %s", Path(marker).read_text().strip() if seen else "never came")
    return seen


if __name__ == "__main__":
    state = live(sys.argv[1], return_state=True)
    run_id = str(state.state_details.flow_run_id)
    print(json.dumps({"flow_run_id": run_id, "state": state.type.value}))
