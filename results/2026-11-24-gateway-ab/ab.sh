#!/bin/bash
# A/B: old vs new sluiced through the gateway, alternating.
for round in 1 2 3; do
  for v in old new; do
    D=/var/tmp/gwab; rm -rf $D; mkdir -p $D
    /tmp/sluiced-$v --data-dir $D --listen 127.0.0.1:19801 --http-listen 127.0.0.1:14566 --cores 1 > /tmp/sd-$v.log 2>&1 &
    P=$!; sleep 1
    r=$(/work/main/target/release/sluice-load --target sluice-http --endpoint 127.0.0.1:14566 --connections 2 --producers 32 --consumers 64 --inflight 1 --duration 8 --warmup 2 --queue ab 2>/dev/null | grep ^received | awk '{print $4}')
    echo "$round $v $r"
    kill $P; wait $P 2>/dev/null
  done
done
