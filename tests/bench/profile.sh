#!/usr/bin/env bash
# Profiles one server of the loopback serving benchmark under load: where its CPU time goes.
#
#   tests/bench/profile.sh [SERVER] [OUT_DIR]
#
# SERVER is one of throughput.sh's: echo, echo-batch, tokio (default), std, std-manual. Starts
# it on 127.0.0.1 (rate limits off), loads it with `loadgen` (window 128, client batch 32), and
# while the load runs: counts its system calls and context switches for 2 s (`perf stat`), then
# samples it for 3 s (`perf record -g`). Prints loadgen's line, system calls per reply, the
# split between kernel and user space, and the hottest user-space functions; OUT_DIR (default:
# a temporary directory) keeps perf.data for `perf report -i OUT_DIR/perf.data`. Needs `perf`
# and permission to use it (root, or kernel.perf_event_paranoid <= 1).
#
# The server, the client and perf run under SCHED_FIFO when chrt is allowed (see
# throughput.sh). Every address is on 127.0.0.0/8.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
name=${1:-tokio}
out=${2:-$(mktemp -d)}
port=${PORT:-7190}
mkdir -p "$out"
command -v perf >/dev/null || { echo "profile.sh: perf is not installed" >&2; exit 1; }

cd "$root"
cargo build --release -q -p krpc-tokio --features krpc-tokio/cli --bin krpc -p krpc-std --example serve \
    -p krpc-tests --bin loadgen --bin udp_echo
target=${CARGO_TARGET_DIR:-$root/target}/release
prio=() perf_prio=()
if chrt -f 10 true 2>/dev/null; then prio=(chrt -f 10) perf_prio=(chrt -f 20); fi

addr=127.0.0.1:$port
case "$name" in
    echo) server=("$target/udp_echo" --bind "$addr") ;;
    echo-batch) server=("$target/udp_echo" --bind "$addr" --batch 32) ;;
    tokio) server=("$target/krpc" serve --bind "$addr" --rate-limit 0 --interval 3600) ;;
    std) server=("$target/examples/serve" --bind "$addr" --rate-limit 0 --interval 3600) ;;
    std-manual) server=("$target/examples/serve" --bind "$addr" --rate-limit 0 --interval 3600 --manual) ;;
    *) echo "profile.sh: unknown server $name" >&2; exit 2 ;;
esac
"${prio[@]}" "${server[@]}" >"$out/server.out" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
sleep 0.5
echo_flag=()
case "$name" in echo*) echo_flag=(--echo) ;; esac
"${prio[@]}" "$target/loadgen" "$addr" "${echo_flag[@]}" --kv --label "$name" --window 128 --batch 32 \
    --warmup 1 --duration 7 --server-pid "$server_pid" >"$out/loadgen.kv" &
load_pid=$!
sleep 1.5
"${perf_prio[@]}" perf stat -x, -e raw_syscalls:sys_enter,context-switches -p "$server_pid" -- sleep 2 \
    2>"$out/stat.csv" >/dev/null
"${perf_prio[@]}" perf record -q -F 4999 -g -p "$server_pid" -o "$out/perf.data" -- sleep 3 >/dev/null 2>&1
wait "$load_pid"

kv() { tr ' ' '\n' <"$out/loadgen.kv" | sed -n "s/^$1=//p"; }
rate=$(kv replies_per_s)
syscalls=$(awk -F, '/raw_syscalls/ { print $1 }' "$out/stat.csv")
switches=$(awk -F, '/context-switches/ { print $1 }' "$out/stat.csv")
echo "$(cat "$out/loadgen.kv")"
echo
echo "$name: $rate replies/s; server $(kv server_us_per_reply) µs CPU per reply ($(kv server_user_us_per_reply) in user space)"
awk -v s="$syscalls" -v c="$switches" -v r="$rate" 'BEGIN {
    # perf stat counted 2 s (its tracepoint slows system calls a little); the rate is loadgen
    printf "system calls per reply: %.3f; context switches per second: %.0f\n", s / 2 / r, c / 2 }'
echo
echo "CPU samples by where they ran:"
perf report -i "$out/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -5
echo
echo "hottest user-space functions (share of all the server's samples):"
perf report -i "$out/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep '\[\.\]' | head -20
echo
echo "perf data: $out/perf.data"
