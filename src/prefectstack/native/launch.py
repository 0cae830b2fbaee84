"""Exec a program with exactly the environment stored in a JSON file.

supervisord's `environment=` needs quoting and %-escaping of every value and
keeps secrets in its config; a 0600 JSON file per program is exact and private.
The program's PID (exec keeps it) goes to ENV_JSON with suffix .pid, so health
probes can tell apart processes that run the same program.
Usage: python -m prefectstack.native.launch ENV_JSON PROGRAM [ARGS...]
"""

import json
import os
import sys


def pid_file(env_file: str) -> str:
    return os.path.splitext(env_file)[0] + ".pid"


def read_pid(env_file: str) -> int | None:
    try:
        with open(pid_file(env_file), encoding="utf-8") as fh:
            return int(fh.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def main() -> None:
    env_file, *argv = sys.argv[1:]
    with open(env_file, encoding="utf-8") as fh:
        env = json.load(fh)
    with open(pid_file(env_file), "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main()
