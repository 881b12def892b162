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
# Processes of these names that run before the install are someone else's: left alone.
peers="redis-server nats-server beam.smp epmd"
running_before=" $(for name in $peers; do pgrep -x "$name" || true; done | tr '\n' ' ')"
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends redis-server nats-server rabbitmq-server linux-perf >/dev/null
if [ "$made_policy" = 1 ]; then $sudo rm -f "$policy"; fi
# Anything the packages started anyway is stopped (only what this install started, by pid),
# so the runner's own instances get the ports.
for name in $peers; do
  for pid in $(pgrep -x "$name" || true); do
    case "$running_before" in *" $pid "*) ;; *) $sudo kill "$pid" 2>/dev/null || true ;; esac
  done
done
redis-server --version
nats-server --version
dpkg-query -W -f='rabbitmq-server ${Version}\n' rabbitmq-server
