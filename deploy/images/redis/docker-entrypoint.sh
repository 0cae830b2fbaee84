#!/bin/sh
# Entry point of the local Redis image: redis-server runs as the redis account
# and owns /data; any other command runs as given.
set -eu
if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis:redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
