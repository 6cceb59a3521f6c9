#!/usr/bin/env bash
# Instructions per proxied request on the plain route, counted by callgrind (repeatable,
# unlike wall-clock numbers on a shared VM). Usage, from the repository root:
#   scripts/callgrind.sh [requests]     (default 20000)
# Builds the release binary, strips its debug info (valgrind cannot read Swift 6.3's),
# starts an NGINX upstream with a fixed ~100-byte JSON answer, runs the gateway under
# callgrind with one event loop, warms up, zeroes the counters, sends the requests with a
# keep-alive client, dumps, and prints Ir per request and the top functions.
set -euo pipefail
N=${1:-20000}
command -v valgrind >/dev/null || { apt-get install -y -q valgrind >/dev/null; }
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || { apt-get install -y -q nginx >/dev/null; }
swift build -c release --product gateway >&2
bin="$(swift build -c release --show-bin-path)/gateway"
work=$(mktemp -d /tmp/callgrind.XXXXXX)
trap 'kill $(cat $work/nginx.pid 2>/dev/null) 2>/dev/null; kill $GW 2>/dev/null; wait 2>/dev/null; true' EXIT
cp "$bin" "$work/gateway" && strip --strip-debug "$work/gateway"
UP=18391; GWP=18392
cat > "$work/nginx.conf" <<NGX
worker_processes 1; pid $work/nginx.pid; error_log $work/nginx.err; daemon on;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP; location / { default_type application/json;
    return 200 '{"id":42,"name":"bench","ok":true,"items":[1,2,3],"message":"a fixed answer of about a hundred bytes"}'; } } }
NGX
/usr/sbin/nginx -c "$work/nginx.conf"
cat > "$work/gw.json" <<JSON
{ "listeners": [ { "name": "bench", "address": "127.0.0.1:$GWP" } ],
  "server": { "workers": 1 },
  "upstreams": { "up": { "targets": [ "http://127.0.0.1:$UP" ] } },
  "routes": [ { "name": "all", "match": { "path_prefix": "/" }, "upstream": "up" } ],
  "access_log": { "enabled": false } }
JSON
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$work/gateway" run --config "$work/gw.json" 2>"$work/vg.log" &
GW=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$GWP/" >/dev/null && break; sleep 0.2; done
python3 - "$GWP" 2000 <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
req = b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: callgrind\r\nAccept: */*\r\n\r\n"
for _ in range(n):
    s.sendall(req)
    buf = b""
    while b"ok" not in buf or not buf.endswith(b"}"):
        buf += s.recv(65536)
PY
callgrind_control -z "$GW" >/dev/null
python3 - "$GWP" "$N" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
req = b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: callgrind\r\nAccept: */*\r\n\r\n"
for _ in range(n):
    s.sendall(req)
    buf = b""
    while b"ok" not in buf or not buf.endswith(b"}"):
        buf += s.recv(65536)
PY
callgrind_control -d "$GW" >/dev/null
sleep 1
dump=$(ls -t "$work"/cg.out* | head -1)
total=$(callgrind_annotate "$dump" 2>/dev/null | grep -m1 "PROGRAM TOTALS" | awk '{gsub(",","",$1); print $1}')
echo "requests: $N"
echo "instructions: $total"
echo "instructions per request: $((total / N))"
callgrind_annotate --inclusive=no "$dump" 2>/dev/null | sed -n '/^Ir/,$p' | head -45
cp "$dump" /tmp/callgrind.last.out
