#!/bin/bash
# usage: cpu.sh OUT http|binary on|off
# queue-max-100b's load (one daemon core, one load core) through the gateway (http) or the
# binary protocol, with --credentials and a principal with an identity policy (on) or without
# (off); prints the daemon's CPU per message, read from /proc over 8 s of the run.
OUT=$1; FRONT=$2; MODE=$3
rm -rf /var/tmp/slg; mkdir -p /var/tmp/slg $OUT
cat > /var/tmp/slg/creds.json <<'JSON'
{"principals":[{"access_key_id":"AKIASLUICEBENCH","secret_access_key":"sluice-bench-secret-0123456789",
  "policies":[{"Statement":[{"Effect":"Allow","Action":["sqs:*","sns:*","kinesis:*"],"Resource":"*"},
                            {"Effect":"Deny","Action":"sqs:DeleteQueue","Resource":"*"}]}]}]}
JSON
EXTRA=""; KEYS=""
if [ "$MODE" = on ]; then EXTRA="--credentials /var/tmp/slg/creds.json"; KEYS="--access-key-id AKIASLUICEBENCH --secret-access-key sluice-bench-secret-0123456789"; fi
if [ "$FRONT" = http ]; then TARGET="--target sluice-http --endpoint 127.0.0.1:14566"; else TARGET="--target sluice --endpoint 127.0.0.1:19801"; fi
/work/main/target/release/sluiced --listen 127.0.0.1:19801 --http-listen 127.0.0.1:14566 --data-dir /var/tmp/slg/data --cores 1 --fsync always $EXTRA > $OUT/server.log 2>&1 &
SP=$!
sleep 1
/work/main/target/release/sluice-load $TARGET $KEYS --message-size 100 --cores 1 --connections 2 --producers 32 --workload queue --consumers 64 --batch 10 --inflight 1 --duration 12 --warmup 2 --out $OUT/load > $OUT/load.txt 2>&1 &
LP=$!
sleep 4
T0=$(awk '{print $14+$15}' /proc/$SP/stat); N0=$(date +%s.%N)
sleep 8
T1=$(awk '{print $14+$15}' /proc/$SP/stat); N1=$(date +%s.%N)
wait $LP
kill $SP; wait $SP
RATE=$(grep -E "^\s*received" $OUT/load.txt | tail -1 | awk '{print $4}')
python3 -c "
t=($T1-$T0)/100.0; w=$N1-$N0; r=$RATE
print('$FRONT auth $MODE: daemon cpu %.1f%% of a core; %d msgs/s; %.2f us of daemon CPU per message end to end' % (100*t/w, r, 1e6*t/w/r))
" | tee $OUT/cpu.txt
