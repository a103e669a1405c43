#!/usr/bin/env bash
# Starts the local PostgreSQL and Redis that the tests use, if they are not running.
# PostgreSQL: 127.0.0.1:5432, trust auth, database `test`. Redis: 127.0.0.1:6379.
set -euo pipefail

log() { printf 'services.sh: %s\n' "$*" >&2; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

if ! pg_up; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        log "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    else
        log "PostgreSQL is not installed; installing it from Debian's packages"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
    for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
fi
pg_up || { log "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1; }
# The tests connect as `postgres` to database `test`; create it if missing.
if ! psql -h 127.0.0.1 -U postgres -d test -c 'SELECT 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null 2>&1 || true
fi

if ! redis_up; then
    if ! command -v redis-server >/dev/null 2>&1; then
        log "Redis is not installed; installing it from Debian's packages"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 50); do redis_up && break; sleep 0.2; done
fi
redis_up || { log "Redis did not come up on 127.0.0.1:6379"; exit 1; }
log "PostgreSQL and Redis are up"
