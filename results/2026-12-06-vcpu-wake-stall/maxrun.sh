#!/bin/bash
OUT=$1; shift
rm -rf /var/tmp/sl; mkdir -p $OUT
env $SLENV /work/main/target/release/sluiced --listen 127.0.0.1:19800 --data-dir /var/tmp/sl --cores 1 --fsync always --http-listen off > $OUT/server.log 2>&1 &
SP=$!
sleep 1
date +%s.%N > $OUT/start
/work/main/target/release/sluice-load --target sluice --endpoint 127.0.0.1:19800 --message-size 100 --cores 1 --connections 2 --producers 32 --workload queue --consumers 64 --batch 10 --inflight 1 --duration ${DUR:-15} --warmup 2 --out $OUT/load > $OUT/load.txt 2>&1
kill $SP; wait $SP
