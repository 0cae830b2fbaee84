#!/bin/sh
# Preregisters the stack's PostgreSQL in pgAdmin: writes servers.json and the
# pgpass file pgAdmin's server entry points at, so it connects without asking.
# Run before pgAdmin starts, by the compose pgadmin service and by native mode.
#
# Environment: SERVERS_JSON (file to write), STORAGE_DIR (pgAdmin's storage
# root), PGADMIN_DEFAULT_EMAIL, PROJECT_NAME, PG_HOST, PG_PORT, POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_DB.
set -eu

: "${SERVERS_JSON:?}" "${STORAGE_DIR:?}" "${PGADMIN_DEFAULT_EMAIL:?}" "${PROJECT_NAME:?}"
: "${PG_HOST:?}" "${PG_PORT:?}" "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}" "${POSTGRES_DB:?}"

cat > "$SERVERS_JSON" <<JSON
{
  "Servers": {
    "1": {
      "Name": "${PROJECT_NAME} PostgreSQL",
      "Group": "${PROJECT_NAME}",
      "Host": "${PG_HOST}",
      "Port": ${PG_PORT},
      "MaintenanceDB": "${POSTGRES_DB}",
      "Username": "${POSTGRES_USER}",
      "SSLMode": "prefer",
      "PassFile": "/pgpass"
    }
  }
}
JSON

# In server mode pgAdmin resolves PassFile inside the user's storage directory,
# named after the login e-mail with '@' replaced by '_'.
user_dir="$STORAGE_DIR/$(printf '%s' "$PGADMIN_DEFAULT_EMAIL" | tr '@' '_')"
mkdir -p "$user_dir"
chmod 700 "$user_dir"
umask 077
printf '%s:%s:*:%s:%s\n' "$PG_HOST" "$PG_PORT" "$POSTGRES_USER" "$POSTGRES_PASSWORD" \
    > "$user_dir/pgpass"
