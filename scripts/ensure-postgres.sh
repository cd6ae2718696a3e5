#!/usr/bin/env bash
# Makes sure a Postgres server answers on 127.0.0.1:5432 and lets user
# `postgres` in without a password from 127.0.0.1 (trust auth), for the
# tests and benchmarks. Idempotent: does nothing when that already holds.
# Otherwise starts the installed cluster, or installs Debian's `postgresql`
# package first (needs root or sudo), and configures trust auth for
# 127.0.0.1. Says what it did. Exits non-zero, with the reason, when it
# cannot get there.
set -euo pipefail

HOST=127.0.0.1
PORT=5432
WAIT_SECS="${SHARDLINE_PG_WAIT_SECS:-60}"

say() { echo "ensure-postgres: $*"; }
die() { echo "ensure-postgres: error: $*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root (or passwordless sudo) to run: $*"
  fi
}

ready() { pg_isready -q -h "$HOST" -p "$PORT" >/dev/null 2>&1; }

can_login() {
  PGCONNECT_TIMEOUT=5 psql -w -h "$HOST" -p "$PORT" -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1
}

wait_ready() {
  local waited=0
  until ready; do
    if [ "$waited" -ge "$WAIT_SECS" ]; then
      die "Postgres did not answer on $HOST:$PORT within ${WAIT_SECS}s; see /var/log/postgresql/"
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

# The cluster that serves port 5432 (Debian layout: /etc/postgresql/VERSION/NAME).
cluster_version() {
  local conf version
  for conf in /etc/postgresql/*/main/postgresql.conf; do
    [ -f "$conf" ] || continue
    version="$(basename "$(dirname "$(dirname "$conf")")")"
    if grep -Eq "^[[:space:]]*port[[:space:]]*=[[:space:]]*$PORT\b" "$conf"; then
      echo "$version"
      return
    fi
  done
  ls /etc/postgresql 2>/dev/null | sort -V | tail -1
}

install_postgres() {
  command -v apt-get >/dev/null 2>&1 \
    || die "Postgres is not installed and this is not a Debian-like system; install PostgreSQL and make it listen on $HOST:$PORT"
  say "Postgres is not installed; installing Debian's postgresql package"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
}

# Puts `host all all 127.0.0.1/32 trust` first in pg_hba.conf (the first
# matching line wins). Returns 0 when it changed the file.
configure_trust() {
  local version="$1" hba
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  [ -f "$hba" ] || die "no $hba; is cluster $version/main set up?"
  if head -n "$(grep -Enm1 '^[[:space:]]*host' "$hba" | cut -d: -f1 || echo 1)" "$hba" \
      | grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust'; then
    return 1
  fi
  say "adding trust auth for 127.0.0.1 to $hba"
  as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  return 0
}

# tests/e2e_cluster.rs starts (and restarts) a private server of its own
# with initdb and pg_ctl, so the server binaries must be installed even when
# another Postgres answers on the port.
have_server_binaries() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
    || { command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; }
}

if ready && can_login; then
  if ! have_server_binaries; then
    install_postgres
  fi
  say "Postgres already answers on $HOST:$PORT with trust auth for postgres; nothing to do"
  exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  install_postgres
fi
command -v pg_isready >/dev/null 2>&1 || die "pg_isready is missing after installing postgresql"

version="$(cluster_version)"
[ -n "$version" ] || die "no Postgres cluster under /etc/postgresql; create one with: pg_createcluster --start <version> main"

changed_hba=0
if configure_trust "$version"; then
  changed_hba=1
fi

if ready; then
  if [ "$changed_hba" -eq 1 ]; then
    say "reloading cluster $version/main for the new auth rule"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  fi
else
  say "starting cluster $version/main"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start \
    || say "pg_ctlcluster start returned an error; waiting in case it is starting anyway"
fi

wait_ready
can_login || die "Postgres answers on $HOST:$PORT but user postgres cannot log in without a password; check /etc/postgresql/$version/main/pg_hba.conf"
say "Postgres $version answers on $HOST:$PORT with trust auth for postgres"
