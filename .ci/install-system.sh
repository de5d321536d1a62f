#!/usr/bin/env bash
# Debian packages the test suite exercises for real (installed only when missing).
set -euo pipefail
need=()
command -v stress-ng >/dev/null || need+=(stress-ng)
command -v prometheus >/dev/null || need+=(prometheus)
# The web UI's browser tests drive the system Chromium through its chromedriver.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# tests/scale: a run through RabbitMQ (private vhost), agents in network namespaces.
command -v rabbitmq-server >/dev/null || need+=(rabbitmq-server)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q "${need[@]}" >/dev/null
  }
fi
