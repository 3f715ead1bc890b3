#!/bin/sh
# One-shot against chunked for a 200 KB image over the built-in LTE link profile
# (BENCHMARKS.md "One-shot upload"). Usage: bench-results/oneshot_lte.sh [RUNS] [BIN] [API]
# Starts `chunkwise serve` on 127.0.0.1:18414, uploads the same image RUNS times per mode
# (the modes alternate, so drift hits both), and prints each run's elapsed time from the
# upload report, then the median per mode.
set -eu
RUNS=${1:-7}
BIN=${2:-./target/release/chunkwise}
API=${3:-v2}
DIR=$(mktemp -d)
PORT=18414
"$BIN" serve --listen 127.0.0.1:$PORT >"$DIR/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null; rm -rf "$DIR"' EXIT
sleep 1
# A 200 KB PNG: the 8-byte signature and an IHDR chunk, then deterministic bytes.
python3 -c "
import random, sys
r = random.Random(14)
head = b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x80\x00\x00\x01\xe0'
sys.stdout.buffer.write(head + bytes(r.getrandbits(8) for _ in range(200000 - len(head))))
" >"$DIR/photo.png"
for i in $(seq 1 "$RUNS"); do
  for mode in always never; do
    "$BIN" upload "$DIR/photo.png" --base-url http://127.0.0.1:$PORT --api "$API" --link lte \
      --one-shot $mode --no-resume --checkpoint-dir "$DIR/ckpt" --quiet \
      --report "$DIR/$mode-$i.json" >/dev/null
    python3 -c "
import json
r = json.load(open('$DIR/$mode-$i.json'))
e = r['elapsed']
print('$mode', $i, round(e['secs'] + e['nanos'] / 1e9, 3), 'one_shot=%s' % r['one_shot'])
"
  done
done | tee "$DIR/runs.txt"
python3 -c "
import statistics
rows = [l.split() for l in open('$DIR/runs.txt')]
for mode in ('always', 'never'):
    v = sorted(float(r[2]) for r in rows if r[0] == mode)
    print(mode, 'median', round(statistics.median(v), 3), 's; min', v[0], 'max', v[-1], 'n', len(v))
"
