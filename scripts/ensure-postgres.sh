#!/usr/bin/env bash
# Starts the local PostgreSQL cluster if it is installed and down, and waits until it
# accepts connections. Used by `just db-up` and CI.
set -euo pipefail
host=${PGHOST:-127.0.0.1}
port=${PGPORT:-5432}
if pg_isready -h "$host" -p "$port" -q 2>/dev/null; then
  exit 0
fi
if [ -d /etc/postgresql ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
for _ in $(seq 1 60); do
  pg_isready -h "$host" -p "$port" -q 2>/dev/null && exit 0
  sleep 1
done
echo "PostgreSQL is not reachable on $host:$port" >&2
exit 1
