#!/usr/bin/env bash
# Make sure a PostgreSQL answers on 127.0.0.1:5432 with trust auth for `postgres`: use the machine's, start its
# cluster if it is stopped, or install PostgreSQL from Debian and run one of our own in .aevon/pgdata.
set -euo pipefail
host=127.0.0.1 port=5432
ready() { pg_isready -q -h "$host" -p "$port" 2>/dev/null; }
if command -v pg_isready >/dev/null && ready; then echo "postgres: reachable on $host:$port"; exit 0; fi

if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; then
  ver="$(ls /etc/postgresql | sort -V | tail -n1)"
  echo "postgres: starting the machine's cluster $ver/main"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do ready && { echo "postgres: up"; exit 0; }; sleep 1; done
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "postgres: installing from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq && apt-get -o DPkg::Lock::Timeout=300 install -y -qq postgresql >/dev/null
fi
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
data="$(pwd)/.aevon/pgdata"
mkdir -p "$data"
chown -R postgres:postgres "$data"
if [[ ! -f "$data/PG_VERSION" ]]; then
  su postgres -c "$bin/initdb -D '$data' -U postgres --auth=trust" >/dev/null
fi
su postgres -c "$bin/pg_ctl -D '$data' -l '$data/server.log' -o '-h $host -p $port -k /tmp' -w start" >/dev/null
for _ in $(seq 1 30); do ready && { echo "postgres: our own server on $host:$port ($data)"; exit 0; }; sleep 1; done
echo "postgres: could not start a server on $host:$port" >&2
exit 1
