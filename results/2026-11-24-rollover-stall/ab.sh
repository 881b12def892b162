#!/bin/bash
# fsync-always latency at a steady 50,000 msgs/s (open loop), 64 MiB vs 1 GiB log segments,
# two interleaved rounds. Usage: ab.sh OUT_DIR (release binaries in /work/target/release).
out=$1; mkdir -p "$out"
for round in 1 2; do
 for seg in 67108864 1073741824; do
  rm -rf /var/tmp/ab-data; mkdir -p /var/tmp/ab-data
  /work/target/release/sluiced --cores 1 --listen 127.0.0.1:19811 --data-dir /var/tmp/ab-data --segment-bytes $seg --log warn &
  pid=$!; sleep 1
  /work/target/release/sluice-load --endpoint 127.0.0.1:19811 --rate 50000 --connections 2 --producers 32 --consumers 64 \
    --batch 10 --duration 20 --warmup 5 --out "$out/seg-$seg-round-$round" > "$out/seg-$seg-round-$round.txt" 2>&1
  kill $pid; wait $pid 2>/dev/null
  echo "segment $seg round $round: $(grep end_to_end "$out/seg-$seg-round-$round.txt")"
 done
done
rm -rf /var/tmp/ab-data
