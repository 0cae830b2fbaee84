#!/bin/sh
# Entry point of the stack's PostgreSQL images: the pgBackRest repository mounted
# at /pgbackrest (a host folder Docker may have created as root) becomes the
# postgres account's, then the image's own entry point runs unchanged.
set -eu
if [ "${PGBACKREST_REPO1_TYPE:-posix}" != posix ]; then
    echo "PGBACKREST_REPO_TYPE=${PGBACKREST_REPO1_TYPE}: the compose deployment keeps its" \
        "pgBackRest repository in a directory (PGBACKREST_REPO_PATH); an S3 store is" \
        "native mode's. Set PGBACKREST_REPO_TYPE=posix in .env." >&2
    exit 64
fi
if [ "$(id -u)" = 0 ] && [ -d /pgbackrest ]; then
    chown postgres:postgres /pgbackrest
fi
exec docker-entrypoint.sh "$@"
