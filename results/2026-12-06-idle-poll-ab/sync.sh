#!/bin/bash
# usage: sync.sh OUT PRODUCERS CONSUMERS
OUT=$1; P=$2; C=$3
rm -rf /var/tmp/sl; mkdir -p $OUT
/work/main/target/release/sluiced --listen 127.0.0.1:19800 --data-dir /var/tmp/sl --cores 1 --fsync always --http-listen off > $OUT/server.log 2>&1 &
SP=$!
sleep 1
/work/main/target/release/sluice-load --target sluice --endpoint 127.0.0.1:19800 --message-size 100 --cores 1 --connections 2 --producers $P --workload queue --consumers $C --batch 10 --inflight 1 --duration 8 --warmup 2 --out $OUT/load > $OUT/load.txt 2>&1
kill $SP; wait $SP
grep -E "^\s*(send|received)" $OUT/load.txt | tail -2
