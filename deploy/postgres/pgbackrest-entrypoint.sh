#!/bin/sh
# Entry point of the stack's PostgreSQL images: the pgBackRest repository mounted
# at /pgbackrest (a host folder Docker may have created as root) becomes the
# postgres account's, then the image's own entry point runs unchanged.
set -eu
if [ "$(id -u)" = 0 ] && [ -d /pgbackrest ]; then
    chown postgres:postgres /pgbackrest
fi
exec docker-entrypoint.sh "$@"
