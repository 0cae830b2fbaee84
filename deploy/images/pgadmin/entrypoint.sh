#!/bin/sh
# Entry point of the local pgAdmin image: writes pgAdmin's settings
# (server mode, data in /var/lib/pgadmin, then every PGADMIN_CONFIG_<KEY>=<value>
# as KEY = value), creates the login and loads PGADMIN_SERVER_JSON_FILE on the
# first start, then serves pgAdmin with gunicorn.
set -eu
: "${PGADMIN_DEFAULT_EMAIL:?PGADMIN_DEFAULT_EMAIL must be set}"
: "${PGADMIN_DEFAULT_PASSWORD:?PGADMIN_DEFAULT_PASSWORD must be set}"
data=/var/lib/pgadmin

# The settings native mode renders too (deploy/pgadmin/config_local.py.j2).
{
    sed "s|{{ data_dir }}|$data|g" /pgadmin4/config_local.py.j2
    env | sed -n 's/^PGADMIN_CONFIG_\([A-Za-z0-9_]*\)=\(.*\)$/\1 = \2/p'
} > /pgadmin4/config_local.py

if [ ! -f "$data/pgadmin4.db" ]; then
    PGADMIN_SETUP_EMAIL=$PGADMIN_DEFAULT_EMAIL PGADMIN_SETUP_PASSWORD=$PGADMIN_DEFAULT_PASSWORD \
        pgadmin4-cli setup-db
    if [ -n "${PGADMIN_SERVER_JSON_FILE:-}" ] && [ -f "$PGADMIN_SERVER_JSON_FILE" ]; then
        pgadmin4-cli load-servers "$PGADMIN_SERVER_JSON_FILE" --user "$PGADMIN_DEFAULT_EMAIL"
    fi
fi

site=$(echo /venv/lib/python3*/site-packages/pgadmin4)
# One worker: pgAdmin keeps session state in-process.
exec gunicorn --chdir "$site" \
    --bind "${PGADMIN_LISTEN_ADDRESS:-[::]}:${PGADMIN_LISTEN_PORT:-80}" \
    --workers 1 --threads "${GUNICORN_THREADS:-25}" --timeout 86400 \
    --access-logfile - pgAdmin4:app
