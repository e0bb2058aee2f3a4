#!/usr/bin/env bash
# Makes sure a PostgreSQL server accepts connections at 127.0.0.1:5432 as
# user postgres without a password (trust), installing and starting the
# Debian cluster if needed. Used by .ci/run, `make test` and `make run`.
set -euo pipefail
ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ready; then exit 0; fi
if ! command -v pg_ctlcluster >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-client-15
fi
ver="$(ls /etc/postgresql | sort -n | tail -1)"
if [ -z "${ver}" ]; then echo "no PostgreSQL cluster found" >&2; exit 1; fi
if ! pg_lsclusters -h | awk '{print $2}' | grep -qx main; then
  pg_createcluster "${ver}" main
fi
hba="/etc/postgresql/${ver}/main/pg_hba.conf"
if ! grep -q "^host all all 127.0.0.1/32 trust" "${hba}"; then
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "${hba}"
fi
pg_ctlcluster --skip-systemctl-redirect "${ver}" main start || true
for _ in $(seq 1 60); do
  if ready; then exit 0; fi
  sleep 0.5
done
echo "PostgreSQL did not become ready at 127.0.0.1:5432" >&2
exit 1
