#!/usr/bin/env bash
# Start PostgreSQL and Redis when they are not already running (CI requires both).
set -u
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }

if ! pg_up; then
  echo "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
fi
if ! redis_up; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
# RabbitMQ: tests/scale/test_brokers.py runs one experiment through it (own vhost).
rabbit_up() { timeout 10 rabbitmqctl -q status >/dev/null 2>&1; }
if command -v rabbitmq-server >/dev/null && ! rabbit_up; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  timeout 90 rabbitmqctl -q await_startup >/dev/null 2>&1 || echo "WARNING: RabbitMQ did not start"
fi
for _ in $(seq 1 30); do
  if pg_up && redis_up; then exit 0; fi
  sleep 1
done
pg_up || echo "ERROR: PostgreSQL is not running on 127.0.0.1:5432"
redis_up || echo "ERROR: Redis is not running on 127.0.0.1:6379"
exit 1
