#!/usr/bin/env bash
# Loopback serving throughput: how many `ping` queries per second each server answers on this
# machine, against a raw UDP echo server (the ceiling: one recv and one send per datagram).
#
#   tests/bench/throughput.sh [--append FILE] [--raw FILE] [--svg FILE]
#
# Builds the release binaries, then, ROUNDS times, for each server in turn: starts it on
# 127.0.0.1, runs `loadgen` against it (WINDOW pings in flight, WARMUP seconds unmeasured, then
# DURATION seconds measured), stops it. Rounds interleave the servers, so that a disturbance
# of the machine hits them alike. Prints a Markdown table of the medians over the rounds
# (appended to FILE with --append; every loadgen line goes to --raw FILE; --svg FILE draws the
# bar chart of docs/performance.md with tests/src/bin/throughput_plot.rs).
#
# Servers (SERVERS, in this order): echo = tests/src/bin/udp_echo.rs, one recv_from and one
# send_to per datagram (c, the ceiling the ratios refer to); echo-batch = the same echo with
# recvmmsg/sendmmsg of up to BATCH datagrams (what batching alone is worth); tokio = `krpc serve`
# of krpc-tokio (a); std = krpc-std's `serve` example on its driver thread (b); std-manual = the
# same with `--manual` (a `Driver` stepped on the main thread); js = the JavaScript k-rpc 5.1.0
# responder, ../shared/bench/js-krpc-responder.js (d; skipped when node or k-rpc is missing:
# tests/interop/setup.sh installs k-rpc 5.1.0 into tests/interop/node_modules). Every KRPC
# server runs with `--rate-limit 0`: the per-source limit and the reply budget would otherwise
# drop almost all of one client's queries.
#
# Environment (defaults): DURATION=10 WARMUP=2 ROUNDS=3 WINDOW=128 BATCH=32 (datagrams per
# recvmmsg/sendmmsg in the client and in echo-batch; 1 = plain recv/send) PORT=7100 (first port;
# one per server and round) SERVERS="echo echo-batch tokio std std-manual js"
# JS_NODE_MODULES=tests/interop/node_modules (else /tmp/jsbench/node_modules) CARGO_TARGET_DIR.
# RT=auto|1|0: run server and client under SCHED_FIFO (chrt -f 10) so that other work on the
# machine does not take their cores mid-measurement (auto: when chrt is allowed). The kernel
# keeps 5% of each core for other tasks (sched_rt_runtime_us), so a runaway process cannot
# hang the machine.
#
# Every address is on 127.0.0.0/8. Nothing here asserts a speed: it reports one.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
append=""
raw=""
svg=""
while [ $# -gt 0 ]; do
    case "$1" in
        --append) append="$2"; shift 2 ;;
        --raw) raw="$2"; shift 2 ;;
        --svg) svg="$2"; shift 2 ;;
        -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
        *) echo "throughput.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
WINDOW=${WINDOW:-128}
BATCH=${BATCH:-32}
PORT=${PORT:-7100}
SERVERS=${SERVERS:-"echo echo-batch tokio std std-manual js"}
if [ -z "${JS_NODE_MODULES:-}" ]; then
    JS_NODE_MODULES=$root/tests/interop/node_modules
    [ -d "$JS_NODE_MODULES/k-rpc" ] || JS_NODE_MODULES=/tmp/jsbench/node_modules
fi
RT=${RT:-auto}
js_responder=${JS_RESPONDER:-$root/../shared/bench/js-krpc-responder.js}

cd "$root"
echo "building release binaries..." >&2
cargo build --release -q -p krpc-tokio --features krpc-tokio/cli --bin krpc -p krpc-std --example serve \
    -p krpc-tests --bin loadgen --bin udp_echo --bin throughput_plot
target=${CARGO_TARGET_DIR:-$root/target}/release

prio=()
if [ "$RT" = 1 ] || { [ "$RT" = auto ] && chrt -f 10 true 2>/dev/null; }; then
    prio=(chrt -f 10)
fi

logs=$(mktemp -d)
results=$logs/results
: >"$results"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}
trap 'stop_server; rm -rf "$logs"' EXIT

# Waits until something listens on UDP 127.0.0.1:$1 (/proc/net/udp lists it as 0100007F:PORT).
wait_port() {
    local hex
    hex=$(printf '0100007F:%04X' "$1")
    for _ in $(seq 1 100); do
        if grep -q " $hex " /proc/net/udp; then return 0; fi
        kill -0 "$server_pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# start NAME PORT: starts server NAME in the background and sets server_pid (`exec`: the
# server's own pid, not a subshell's, so that its CPU time can be read).
start() {
    local name=$1 port=$2 addr=127.0.0.1:$2
    case "$name" in
        echo) exec "${prio[@]}" "$target/udp_echo" --bind "$addr" ;;
        echo-batch) exec "${prio[@]}" "$target/udp_echo" --bind "$addr" --batch "$BATCH" ;;
        tokio) exec "${prio[@]}" "$target/krpc" serve --bind "$addr" --rate-limit 0 --interval 3600 ;;
        std) exec "${prio[@]}" "$target/examples/serve" --bind "$addr" --interval 3600 --rate-limit 0 ;;
        std-manual) exec "${prio[@]}" "$target/examples/serve" --bind "$addr" --interval 3600 --rate-limit 0 --manual ;;
        js) NODE_PATH="$JS_NODE_MODULES" exec "${prio[@]}" node "$js_responder" "$port" ;;
    esac >"$logs/$name.out" 2>&1 &
    server_pid=$!
}

have_js() {
    command -v node >/dev/null && [ -d "$JS_NODE_MODULES/k-rpc" ] && [ -f "$js_responder" ]
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
node_version=""
case " $SERVERS " in *" js "*) have_js && node_version=$(node --version) ;; esac
port=$PORT
for round in $(seq 1 "$ROUNDS"); do
    for name in $SERVERS; do
        if [ "$name" = js ] && ! have_js; then
            [ "$round" = 1 ] && echo "skipping js: node, $JS_NODE_MODULES/k-rpc or $js_responder missing" >&2
            continue
        fi
        start "$name" "$port"
        if ! wait_port "$port"; then
            echo "$name did not start:" >&2
            cat "$logs/$name.out" >&2
            stop_server
            port=$((port + 1))
            continue
        fi
        echo_flag=()
        case "$name" in echo*) echo_flag=(--echo) ;; esac
        line=$("${prio[@]}" "$target/loadgen" "127.0.0.1:$port" "${echo_flag[@]}" --kv --label "$name" \
            --window "$WINDOW" --batch "$BATCH" --warmup "$WARMUP" --duration "$DURATION" \
            --server-pid "$server_pid") || line=""
        stop_server
        port=$((port + 1))
        if [ -z "$line" ]; then
            echo "round $round, $name: loadgen failed" >&2
            continue
        fi
        echo "round=$round $line" >>"$results"
        echo "round $round: $line" >&2
    done
done
[ -n "$raw" ] && cat "$results" >>"$raw"

cores=$(nproc)
sched=normal
[ ${#prio[@]} -gt 0 ] && sched="SCHED_FIFO (chrt -f 10)"
{
    echo "Loopback serving throughput, $(date -u '+%Y-%m-%d %H:%M UTC'), $cores cores, Linux $(uname -r);"
    echo "window $WINDOW, client batch $BATCH, warm-up ${WARMUP} s, ${DURATION} s measured, $ROUNDS rounds, scheduling: $sched;"
    echo "load average before the run: $load_before${node_version:+; Node $node_version}."
    echo "Medians over the rounds (replies/s: min–max); × echo is the median of each round's ratio to that round's echo."
    echo
    echo "| server | replies/s | × echo | p50 µs | p99 µs | timeouts | server CPU % | server µs/reply (user) | client CPU % | queue KiB server/client | other CPU % |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    awk -v order="$SERVERS" '
        function median(list,    n, a, i, j, t) {
            n = split(list, a, " ")
            for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
            if (n == 0) return "-"
            return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        function minmax(list,    n, a, i, lo, hi) {
            n = split(list, a, " "); lo = a[1]; hi = a[1]
            for (i = 2; i <= n; i++) { if (a[i] + 0 < lo + 0) lo = a[i]; if (a[i] + 0 > hi + 0) hi = a[i] }
            return lo "–" hi
        }
        function add(key, value) { if (value != "-") vals[key] = vals[key] " " value }
        {
            delete f
            for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
            name = f["label"]; round = f["round"]
            rate[name, round] = f["replies_per_s"]; seen[name] = 1; rounds[round] = 1
            add(name SUBSEP "rate", f["replies_per_s"])
            add(name SUBSEP "p50", f["p50_us"]); add(name SUBSEP "p99", f["p99_us"])
            add(name SUBSEP "cpu", f["server_cpu_pct"]); add(name SUBSEP "us", f["server_us_per_reply"])
            add(name SUBSEP "user", f["server_user_us_per_reply"]); add(name SUBSEP "ccpu", f["client_cpu_pct"])
            add(name SUBSEP "sq", f["server_queue_kib"]); add(name SUBSEP "cq", f["client_queue_kib"])
            add(name SUBSEP "other", f["other_cpu_pct"])
            timeouts[name] += f["timeouts"]
        }
        END {
            label["echo"] = "(c) raw UDP echo (ceiling)"; label["echo-batch"] = "(c′) UDP echo, recvmmsg/sendmmsg"
            label["tokio"] = "(a) krpc serve, tokio driver"
            label["std"] = "(b) krpc-std serve, driver thread"; label["std-manual"] = "(b) krpc-std serve --manual"
            label["js"] = "(d) JS k-rpc 5.1.0 responder"
            n = split(order, names, " ")
            for (k = 1; k <= n; k++) {
                name = names[k]
                if (!(name in seen)) continue
                ratios = ""
                for (r in rounds) if (((name, r) in rate) && (("echo", r) in rate) && rate["echo", r] > 0)
                    ratios = ratios " " sprintf("%.3f", rate[name, r] / rate["echo", r])
                ratio = (ratios == "") ? "-" : sprintf("%.2f", median(ratios))
                printf "| %s | %.0f (%s) | %s | %.0f | %.0f | %d | %.0f | %.2f (%.2f) | %.0f | %.0f / %.0f | %.0f |\n",
                    (name in label) ? label[name] : name, median(vals[name, "rate"]), minmax(vals[name, "rate"]), ratio,
                    median(vals[name, "p50"]), median(vals[name, "p99"]), timeouts[name], median(vals[name, "cpu"]),
                    median(vals[name, "us"]), median(vals[name, "user"]), median(vals[name, "ccpu"]),
                    median(vals[name, "sq"]), median(vals[name, "cq"]), median(vals[name, "other"])
            }
        }' "$results"
} >"$logs/table"
echo
cat "$logs/table"
if [ -n "$append" ]; then
    printf '\n' >>"$append"
    cat "$logs/table" >>"$append"
fi
if [ -n "$svg" ]; then
    "$target/throughput_plot" "$results" "$svg" "$(head -n 3 "$logs/table")"
fi
