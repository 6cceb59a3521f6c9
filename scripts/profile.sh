#!/usr/bin/env bash
# Where the plain proxy route spends its CPU, measured on this machine.
#
#   scripts/profile.sh [seconds] [connections]      (defaults: 8, 64)
#
# Builds the release binary, starts an NGINX upstream with a fixed ~100-byte JSON answer and
# the gateway in front of it (2 event loops, no access log), loads it with wrk, and prints:
#   1. user and system CPU microseconds per request of the gateway process (from /proc), for
#      the proxied route and, as a baseline, for a route the gateway answers itself;
#   2. a perf profile (software cpu-clock sampling, user space only): the top symbols by
#      self time. Hardware counters and valgrind are not usable on these VMs (valgrind 3.19
#      aborts on this binary), so sampling is what there is.
# Everything listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail
SECS=${1:-8}
CONNS=${2:-64}
need() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]] || apt-get install -y -q "$2" >/dev/null; }
need nginx nginx; need wrk wrk; need perf linux-perf
swift build -c release --product gateway >&2
bin="$(swift build -c release --show-bin-path)/gateway"
work=$(mktemp -d /tmp/profile.XXXXXX)
cleanup() { [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; [[ -n ${GW:-} ]] && kill "$GW" 2>/dev/null; true; }
trap cleanup EXIT
UP=18491; GWP=18492; LOCAL=18493
cat > "$work/nginx.conf" <<NGX
worker_processes 1; pid $work/nginx.pid; error_log $work/nginx.err; daemon on;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json;
    return 200 '{"id":42,"name":"bench","ok":true,"items":[1,2,3],"message":"a fixed answer of about a hundred bytes"}'; } } }
NGX
/usr/sbin/nginx -c "$work/nginx.conf"
cat > "$work/gw.json" <<JSON
{ "listeners": [ { "name": "proxy", "address": "127.0.0.1:$GWP" }, { "name": "local", "address": "127.0.0.1:$LOCAL" } ],
  "server": { "workers": 2 },
  "upstreams": { "up": { "targets": [ "http://127.0.0.1:$UP" ] } },
  "routes": [
    { "name": "local", "match": { "path_prefix": "/local" }, "respond": { "status": 200, "body": "{\"id\":42,\"name\":\"bench\",\"ok\":true,\"items\":[1,2,3],\"message\":\"a fixed answer of about a hundred bytes\"}" } },
    { "name": "all", "match": { "path_prefix": "/" }, "upstream": "up" } ],
  "access_log": { "enabled": false } }
JSON
"$bin" run --config "$work/gw.json" 2>"$work/gw.log" &
GW=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GWP/" >/dev/null && break; sleep 0.1; done

cpu_per_request() {  # url label
    wrk -t2 -c"$CONNS" -d2s "$1" >/dev/null
    local a b n
    a=$(awk '{print $14, $15}' "/proc/$GW/stat")
    wrk -t2 -c"$CONNS" -d"${SECS}s" "$1" >"$work/wrk.txt"
    b=$(awk '{print $14, $15}' "/proc/$GW/stat")
    n=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
    python3 - "$a" "$b" "$n" "$2" "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")" <<'PY'
import os, sys
a, b, n, label, rps = sys.argv[1].split(), sys.argv[2].split(), int(sys.argv[3]), sys.argv[4], sys.argv[5]
hz = os.sysconf("SC_CLK_TCK")
u = (int(b[0]) - int(a[0])) / hz * 1e6 / n
s = (int(b[1]) - int(a[1])) / hz * 1e6 / n
print(f"{label:>14}: {float(rps):9.0f} req/s   user {u:5.1f} us/req   system {s:5.1f} us/req")
PY
}
echo "wrk -t2 -c$CONNS -d${SECS}s, gateway with 2 event loops, NGINX upstream with 1 worker"
cpu_per_request "http://127.0.0.1:$GWP/" "proxied route"
cpu_per_request "http://127.0.0.1:$LOCAL/local" "respond route"

wrk -t2 -c"$CONNS" -d"$((SECS + 4))s" "http://127.0.0.1:$GWP/" >/dev/null &
WRK=$!
sleep 2
perf record -e cpu-clock:u -F 2000 -g -p "$GW" -o "$work/perf.data" -- sleep "$SECS" >/dev/null 2>&1 || echo "perf record failed"
wait "$WRK"
echo
echo "top user-space symbols by self time (perf, proxied route):"
perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep '%' | head -30 | cut -c1-150
