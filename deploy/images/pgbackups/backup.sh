#!/bin/sh
# A backup now, into /backups, with the retention of the environment.
exec python -m prefectstack.compose.pgbackups --once
