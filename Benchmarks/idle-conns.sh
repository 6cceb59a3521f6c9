#!/usr/bin/env bash
# Many idle keep-alive connections (issue 12: 10,000 held with RSS <= 200 MiB). Run from the
# project's root:
#   Benchmarks/idle-conns.sh [connections, default 10000] [hold seconds, default 20]
# Needs nginx (Debian package) and python3.
#
# The release gateway (2 event loops) proxies "/" to a private NGINX. A Python client opens
# the given number of connections, sends one keep-alive GET on each and reads its 200, and
# keeps every connection open and idle. The gateway's RSS (VmRSS, and its peak VmHWM) and
# open descriptors are sampled before, after all connections are held, and through the hold.
# At the end one more GET goes out on a spread of 100 held connections: each must still be
# open and answered (an idle connection the gateway dropped would fail here). Exit 1 when a
# connection failed, or RSS went over IDLE_RSS_LIMIT_MIB (default 200).
set -euo pipefail
source "$(dirname "$0")/upstream.sh"
[[ -f Package.swift ]] || { echo "run this from the project's root" >&2; exit 1; }
conns=${1:-10000}
hold=${2:-20}
limit_mib=${IDLE_RSS_LIMIT_MIB:-200}
for tool in nginx python3 curl; do command -v $tool >/dev/null || { echo "$tool is not installed" >&2; exit 1; }; done
need=$((conns + 200))
(( $(ulimit -n) >= need )) || ulimit -n "$need" || { echo "ulimit -n must allow $need descriptors" >&2; exit 1; }
swift build -c release --product gateway >&2
bin="$(swift build -c release --show-bin-path)/gateway"
work=$(mktemp -d /tmp/idle-conns.XXXXXX)
port_up=18801 port_gw=18810 port_admin=18811

cat > "$work/gateway.json" <<JSON
{ "listeners": [ { "name": "idle", "address": "127.0.0.1:$port_gw" } ],
  "admin": { "address": "127.0.0.1:$port_admin" },
  "server": { "workers": 2, "idle_timeout": "300s" },
  "upstreams": { "app": { "targets": [ "http://127.0.0.1:$port_up" ] } },
  "routes": [ { "name": "app", "match": { "path_prefix": "/" }, "upstream": "app" } ],
  "access_log": { "enabled": false } }
JSON

cleanup() {
  [[ -n ${gw_pid:-} ]] && kill "$gw_pid" 2>/dev/null || true
  stop_upstream "$work" upstream
}
trap cleanup EXIT
echo "work directory: $work" >&2
start_upstream "$work" upstream "$port_up" '{"ok":true,"service":"idle-conns"}' 4096
"$bin" run --config "$work/gateway.json" > "$work/gateway.log" 2>&1 &
gw_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port_gw/" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port_gw/" >/dev/null || { echo "the gateway did not start: $work/gateway.log" >&2; exit 1; }

python3 - "$gw_pid" "$port_gw" "$conns" "$hold" "$limit_mib" <<'PY'
import os, selectors, socket, sys, time
pid, port, n, hold, limit = (int(a) for a in sys.argv[1:6])
request = b"GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle-conns\r\n\r\n"

def status():
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

def fds(): return len(os.listdir(f"/proc/{pid}/fd"))
def sample(label):
    rss, hwm = status()
    print(f"{label:<34} rss {rss / 1024:7.1f} MiB   peak {hwm / 1024:7.1f} MiB   fds {fds():6d}", flush=True)
    return rss

def exchange(socks):
    """Sends the request on every socket and reads one whole response from each (Content-Length framed)."""
    sel = selectors.DefaultSelector()
    pending = {}
    for s in socks:
        s.sendall(request)
        pending[s] = b""
        sel.register(s, selectors.EVENT_READ)
    failed = 0
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                failed += 1; sel.unregister(s); del pending[s]; continue
            buf = pending[s] + data
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep:
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length": length = int(value)
                if len(body) >= length:
                    if not head.startswith(b"HTTP/1.1 200"): failed += 1
                    sel.unregister(s); del pending[s]; continue
            pending[s] = buf
    failed += len(pending)
    sel.close()
    return failed

base = sample("before")
socks, failed = [], 0
t0 = time.monotonic()
for start in range(0, n, 500):
    batch = []
    for _ in range(min(500, n - start)):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        batch.append(s)
    failed += exchange(batch)
    socks.extend(batch)
print(f"opened {len(socks)} connections, one request each, in {time.monotonic() - t0:.1f} s; failed {failed}", flush=True)
peak = sample(f"{n} connections held")
for i in range(hold // 5):
    time.sleep(5)
    peak = max(peak, sample(f"  idle {5 * (i + 1)} s"))
probe = socks[:: max(1, len(socks) // 100)][:100]
again = exchange(probe)
print(f"second request on {len(probe)} held connections: failed {again}", flush=True)
rss, hwm = status()
per_conn = (peak - base) * 1024 / max(1, n)
print(f"summary: connections={n} failed={failed + again} rss_mib_before={base / 1024:.1f} rss_mib_held={peak / 1024:.1f} "
      f"peak_mib={hwm / 1024:.1f} bytes_per_connection={per_conn:.0f} limit_mib={limit}")
for s in socks: s.close()
sys.exit(1 if failed + again or hwm / 1024 > limit else 0)
PY
