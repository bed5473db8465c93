#!/usr/bin/env bash
# The part of the upstream postgres image's entrypoint docker-compose.yml relies on: on an
# empty data directory, initdb with POSTGRES_USER / POSTGRES_PASSWORD, create POSTGRES_DB and
# run /docker-entrypoint-initdb.d/*.sql on a server that listens on its socket only (so a TCP
# healthcheck stays red until initialisation is over); then exec the command.
set -euo pipefail

if [ "${1:-}" = "postgres" ] && [ ! -s "${PGDATA}/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?the postgres stand-in needs POSTGRES_PASSWORD}"
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-${user}}"
    initdb --username="${user}" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD}") \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
        -D "${PGDATA}" >/dev/null
    # Like upstream: other containers connect over the network, with the password.
    printf "listen_addresses = '*'\n" >>"${PGDATA}/postgresql.conf"
    printf 'host all all all scram-sha-256\n' >>"${PGDATA}/pg_hba.conf"
    pg_ctl -D "${PGDATA}" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "${db}" != "postgres" ]; then
        psql -v ON_ERROR_STOP=1 --username="${user}" --dbname=postgres \
            -c "CREATE DATABASE \"${db}\"" >/dev/null
    fi
    for script in /docker-entrypoint-initdb.d/*.sql; do
        [ -e "${script}" ] || continue
        echo "postgres stand-in: running ${script}"
        psql -v ON_ERROR_STOP=1 --username="${user}" --dbname="${db}" -f "${script}" >/dev/null
    done
    pg_ctl -D "${PGDATA}" -m fast -w stop >/dev/null
    echo "postgres stand-in: initialised ${PGDATA}"
fi
exec "$@"
