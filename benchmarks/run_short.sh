#!/usr/bin/env bash
# Every benchmark in its short mode (few samples, no timing assertions), with both brokers: a benchmark that no
# longer runs turns CI red. Numbers printed here mean nothing. Outputs go to a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d "${TMPDIR:-/tmp}/cl-bench-short.XXXXXX")"
trap 'rm -rf "$out"' EXIT
brokers=(amqtt)
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
  brokers=(mosquitto amqtt)
else
  echo "run_short: mosquitto is not installed; the benchmarks run with amqtt only" >&2
fi
for broker in "${brokers[@]}"; do
  echo "== benchmarks, short mode, broker $broker"
  locust_workers=1; [ "$broker" = amqtt ] && locust_workers=0   # Locust distributed, and one process
  uv run python benchmarks/bench_client.py --short --broker "$broker"
  uv run python benchmarks/bench_server.py --short --broker "$broker"
  uv run python benchmarks/bench_capacity.py --short --broker "$broker" --mix hash=1 --deployment-workers 1 \
    --locust-workers "$locust_workers" \
    --out "$out/capacity-$broker"
done
echo "== bench_certify, short mode (the hash row, both orders)"
uv run python benchmarks/bench_certify.py --short -n 2 --out "$out/certify.md"
echo "run_short: every benchmark ran with ${brokers[*]}"
