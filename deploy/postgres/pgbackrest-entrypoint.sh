#!/bin/sh
# Entry point of the stack's PostgreSQL images: the pgBackRest repository mounted
# at /pgbackrest (a host folder Docker may have created as root) becomes the
# postgres account's, then the image's own entry point runs unchanged.
set -eu
if [ "${PGBACKREST_REPO1_TYPE:-posix}" = s3 ] && [ -z "${PGBACKREST_REPO1_S3_BUCKET:-}" ]; then
    echo "PGBACKREST_REPO_TYPE is s3 but the store's settings are missing: add" \
        "docker-compose.s3.yml to COMPOSE_FILE in .env" >&2
    exit 64
fi
if [ "$(id -u)" = 0 ] && [ -d /pgbackrest ]; then
    chown postgres:postgres /pgbackrest
fi
exec docker-entrypoint.sh "$@"
