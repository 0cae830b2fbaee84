"""Exec a program with exactly the environment stored in a JSON file.

supervisord's `environment=` needs quoting and %-escaping of every value and
keeps secrets in its config; a 0600 JSON file per program is exact and private.
Usage: python -m prefectstack.native.launch ENV_JSON PROGRAM [ARGS...]
"""

import json
import os
import sys


def main() -> None:
    env_file, *argv = sys.argv[1:]
    with open(env_file, encoding="utf-8") as fh:
        env = json.load(fh)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main()
