#!/bin/bash
# usage: cpu.sh OUT : queue-max-100b load; daemon CPU time per message end to end from /proc
OUT=$1; shift
rm -rf /var/tmp/sl; mkdir -p $OUT
env $SLENV ${SLUICED:-/work/main/target/release/sluiced} --listen 127.0.0.1:19800 --data-dir /var/tmp/sl --cores 1 --fsync always --http-listen off > $OUT/server.log 2>&1 &
SP=$!
sleep 1
/work/main/target/release/sluice-load --target sluice --endpoint 127.0.0.1:19800 --message-size 100 --cores 1 --connections 2 --producers 32 --workload queue --consumers 64 --batch 10 --inflight 1 --duration ${DUR:-15} --warmup 2 --out $OUT/load > $OUT/load.txt 2>&1 &
LP=$!
sleep 3   # past the warm-up
T0=$(awk '{print $14+$15}' /proc/$SP/stat); N0=$(date +%s.%N)
sleep ${MEAS:-10}
T1=$(awk '{print $14+$15}' /proc/$SP/stat); N1=$(date +%s.%N)
wait $LP
kill $SP; wait $SP
RATE=$(grep -E "^\s*received" $OUT/load.txt | tail -1 | awk '{print $4}')
python3 -c "
t=($T1-$T0)/100.0; w=$N1-$N0; r=$RATE
print('daemon cpu %.2f s over %.2f s wall = %.1f%% of a core; %d msgs/s; %.2f us of daemon CPU per message end to end' % (t, w, 100*t/w, r, 1e6*t/w/r))
" | tee $OUT/cpu.txt
