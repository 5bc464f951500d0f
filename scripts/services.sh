#!/usr/bin/env bash
# Make sure the servers the integration tests use are running: PostgreSQL and MariaDB, and
# the message brokers (RabbitMQ, NATS with JetStream, Redis, Mosquitto) for the queue
# destinations. On a machine where they are already up this only checks them.
set -uo pipefail
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! up 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! up 3306 && [ -x /usr/sbin/mariadbd ]; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
if ! up 6379 && command -v redis-server >/dev/null 2>&1; then
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes >/dev/null || true
fi
if ! up 1883 && command -v mosquitto >/dev/null 2>&1; then
  mosquitto -d -p 1883 || true
fi
if ! up 4222 && command -v nats-server >/dev/null 2>&1; then
  mkdir -p /tmp/backhaul-nats
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/backhaul-nats >/dev/null 2>&1 &
fi
if ! up 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
  rabbitmq-server -detached >/dev/null 2>&1 || true
fi
ports="5432 3306 6379 1883 4222 5672"
for _ in $(seq 1 30); do
  all=1
  for p in $ports; do up "$p" || all=0; done
  if [ "$all" = 1 ]; then exit 0; fi
  sleep 1
done
up 5432 || echo "PostgreSQL is not reachable on 127.0.0.1:5432; its tests will fail." >&2
up 3306 || echo "MariaDB is not reachable on 127.0.0.1:3306; its tests will fail." >&2
up 6379 || echo "Redis is not reachable on 127.0.0.1:6379; its tests will fail." >&2
up 1883 || echo "Mosquitto is not reachable on 127.0.0.1:1883; its tests will fail." >&2
up 4222 || echo "NATS is not reachable on 127.0.0.1:4222; its tests will fail." >&2
up 5672 || echo "RabbitMQ is not reachable on 127.0.0.1:5672; its tests will fail." >&2
exit 0
