#!/usr/bin/env bash
# Make sure the PostgreSQL and MariaDB servers the integration tests use are running.
# On a machine where they are already up this only checks them.
set -uo pipefail
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
my_up() { (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; }
if ! pg_up && command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! my_up && [ -x /usr/sbin/mariadbd ]; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for _ in $(seq 1 30); do
  if pg_up && my_up; then exit 0; fi
  sleep 1
done
pg_up || echo "PostgreSQL is not reachable on 127.0.0.1:5432; its tests will fail." >&2
my_up || echo "MariaDB is not reachable on 127.0.0.1:3306; its tests will fail." >&2
exit 0
