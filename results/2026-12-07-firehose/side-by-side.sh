#!/bin/bash
# usage: fh-run.sh workload(firehose|stream) [extra sluiced args]
W=${1:-firehose}; shift
D=/var/tmp/fh-prof; rm -rf $D; mkdir -p $D
cd /work/main
target/release/sluiced --listen 127.0.0.1:19811 --data-dir $D/data --cores 1 --fsync ${FSYNC:-always} --http-listen off "$@" > $D/server.log 2>&1 &
SP=$!
sleep 1
EXTRA="--shards 4 --consumers 0"; [ $W = firehose ] && EXTRA="--consumers 1"
target/release/sluice-load --target sluice --endpoint 127.0.0.1:19811 --message-size 1024 --cores 1 --connections 2 --producers 32 --workload $W $EXTRA --batch 100 --inflight 1 --duration 10 --warmup 2 --out $D/out > $D/load.log 2>&1 &
LP=$!
sleep 5
# per-thread cpu over 4 s
for t in /proc/$SP/task/*; do echo "$(basename $t) $(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done > $D/t0
D0=$(awk '$3=="vda"{print $6, $10}' /proc/diskstats)
L0=$(awk '{print $14+$15}' /proc/$LP/stat)
sleep 4
for t in /proc/$SP/task/*; do echo "$(basename $t) $(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done > $D/t1
D1=$(awk '$3=="vda"{print $6, $10}' /proc/diskstats)
grep -E "^(read|write)_bytes" /proc/$SP/io /proc/$LP/io
L1=$(awk '{print $14+$15}' /proc/$LP/stat)
join <(sort $D/t0) <(sort $D/t1) | awk '{d=$5-$3; if (d>0) printf "%-20s %5.1f%%\n", $2, d/4}'
echo "disk read/write MB/s: $D0 -> $D1" | awk '{printf "disk read %.0f MB/s write %.0f MB/s\n", ($7-$4)*512/4e6, ($8-$5)*512/4e6}'
echo "load-gen $(( (L1-L0)/4 ))%"
wait $LP
grep -E "^sent|^received" $D/load.log
kill $SP; wait $SP 2>/dev/null
