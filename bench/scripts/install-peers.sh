#!/usr/bin/env bash
# Installs the peer brokers Sluice is measured against, from Debian's packages:
# redis-server (Redis Streams), nats-server (NATS JetStream), rabbitmq-server (RabbitMQ),
# and linux-perf for profiles. The scenario runner (`sluice-bench run`) starts each one
# itself, on 127.0.0.1 with a scratch data directory, so the packaged services are stopped
# and left disabled. Safe to run twice.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
# Packaged services must not start on install (no init system here, and the runner owns
# the ports): policy-rc.d answers "not allowed" for the duration of the install.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  made_policy=1
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends redis-server nats-server rabbitmq-server linux-perf >/dev/null
if [ "$made_policy" = 1 ]; then $sudo rm -f "$policy"; fi
# Anything the packages started anyway is stopped, so the runner's own instances get the ports.
for name in redis-server nats-server beam.smp epmd; do pkill -x "$name" 2>/dev/null || true; done
redis-server --version
nats-server --version
dpkg-query -W -f='rabbitmq-server ${Version}\n' rabbitmq-server
