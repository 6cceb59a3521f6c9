#!/usr/bin/env bash
# Soak test (issue 11; not part of CI): the release gateway under steady keep-alive load for a
# given time while its config is reloaded, an upstream target is killed and restarted (so it
# is ejected and comes back), and the resident memory and open file descriptors of the
# gateway are sampled. Run from the project's root:
#   scripts/soak.sh [minutes, default 30] [connections, default 32]
# Needs nginx and wrk (Debian packages). Prints one line per sample and a summary; exits 1
# when a request failed unexpectedly, RSS grew after warm-up by more than 10%, or the fd
# count grew.
#
# The setup: two upstream targets (private nginx instances answering a small JSON document)
# behind one upstream with `retry` (connect failures and resets, 3 tries), outlier
# detection and a 1 s health check. Every 60 s the config file is rewritten (a route's
# response header changes) and reloaded with `POST /reload`; every 150 s target B is killed
# for 20 s. With retries on, a request that met the dying target is retried on A: the
# client should see no error at all.
set -euo pipefail
[[ -f Package.swift ]] || { echo "run this from the project's root" >&2; exit 1; }
minutes=${1:-30}
conns=${2:-32}
reload_every=${RELOAD_EVERY:-60}   # seconds
kill_every=${KILL_EVERY:-150}      # seconds
# SOAK_ACCESS_LOG=true writes the access log to the work directory (to see what failed).
for tool in nginx wrk curl; do command -v $tool >/dev/null || { echo "$tool is not installed" >&2; exit 1; }; done
swift build -c release --product gateway >&2
bin="$(swift build -c release --show-bin-path)/gateway"
work=$(mktemp -d /tmp/soak.XXXXXX)
port_a=18701 port_b=18702 port_gw=18710 port_admin=18711

upstream() { # name port
  cat > "$work/$1.conf" <<CONF
worker_processes 1;
daemon on;
pid $work/$1.pid;
error_log $work/$1.err;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$2 reuseport;
    keepalive_requests 100000;
    location / { default_type application/json; return 200 '{"served_by":"$1","ok":true}'; }
    location /healthz { return 200 'ok'; }
  }
}
CONF
  nginx -c "$work/$1.conf"
}
stop_upstream() { [[ -f $work/$1.pid ]] && kill "$(cat "$work/$1.pid")" 2>/dev/null || true; rm -f "$work/$1.pid"; }

write_config() { # generation
  cat > "$work/gateway.json" <<JSON
{ "listeners": [ { "name": "soak", "address": "127.0.0.1:$port_gw" } ],
  "admin": { "address": "127.0.0.1:$port_admin" },
  "server": { "workers": 2 },
  "upstreams": { "app": {
      "targets": [ "http://127.0.0.1:$port_a", "http://127.0.0.1:$port_b" ],
      "health_check": { "path": "/healthz", "interval": "1s", "timeout": "500ms", "unhealthy_threshold": 2, "healthy_threshold": 2 },
      "outlier_detection": { "consecutive_gateway_failures": 3, "base_ejection_time": "5s", "interval": "2s" } } },
  "routes": [ { "name": "app", "match": { "path_prefix": "/" }, "upstream": "app",
                "retry": { "attempts": 3, "on": ["connect-failure", "reset", "gateway-error"], "budget_percent": 100 },
                "response_headers": { "set": { "x-soak-generation": "$1" } } } ],
  "access_log": { "enabled": ${SOAK_ACCESS_LOG:-false}, "path": "$work/access.log" } }
JSON
}

cleanup() {
  [[ -n ${wrk_pid:-} ]] && kill "$wrk_pid" 2>/dev/null || true
  [[ -n ${gw_pid:-} ]] && kill "$gw_pid" 2>/dev/null || true
  stop_upstream a; stop_upstream b
}
trap cleanup EXIT
echo "work directory: $work" >&2

upstream a $port_a
upstream b $port_b
write_config 0
"$bin" run --config "$work/gateway.json" > "$work/gateway.log" 2>&1 &
gw_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port_gw/" >/dev/null && break; sleep 0.1; done

seconds=$((minutes * 60))
wrk -t1 -c"$conns" -d"${seconds}s" --timeout 5s --latency "http://127.0.0.1:$port_gw/" > "$work/wrk.out" 2>&1 &
wrk_pid=$!

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$gw_pid/status"; }
fds() { ls "/proc/$gw_pid/fd" | wc -l; }
echo "elapsed_s rss_kib fds event"
start=$(date +%s)
generation=0 b_down_since=0 samples=()
while kill -0 "$wrk_pid" 2>/dev/null; do
  sleep 10
  now=$(( $(date +%s) - start ))
  event=""
  if (( now > 0 && now % reload_every < 10 )); then
    generation=$((generation + 1)); write_config $generation
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port_admin/reload")
    event="reload#$generation:$code"
  fi
  if (( b_down_since == 0 && now % kill_every < 10 && now > 30 )); then
    stop_upstream b; b_down_since=$now; event="$event kill-b"
  elif (( b_down_since > 0 && now - b_down_since >= 20 )); then
    upstream b $port_b; b_down_since=0; event="$event restart-b"
  fi
  line="$now $(rss) $(fds) ${event:--}"
  echo "$line"
  samples+=("$line")
done
wait "$wrk_pid" || true
cat "$work/wrk.out"
# What the gateway counted: answers by status, retries by reason, ejections.
curl -s "http://127.0.0.1:$port_admin/metrics" | grep -E '^gateway_(requests_total|retries_total|outlier_ejections_total)' || true

# Verdict. Errors: wrk's socket errors and non-2xx answers. Memory: RSS at the end against
# the first sample after 5 minutes of warm-up (or the first sample on shorter runs).
errors=$(awk '/Socket errors/ { gsub(",", ""); s = $4 + $6 + $8 + $10 } /Non-2xx/ { n = $NF } END { print s + n + 0 }' "$work/wrk.out")
warm_index=$(( ${#samples[@]} > 30 ? 30 : 0 ))
read -r _ warm_rss warm_fds _ <<< "${samples[$warm_index]}"
read -r _ end_rss end_fds _ <<< "${samples[-1]}"
max_rss=$(printf '%s\n' "${samples[@]}" | awk 'NR > '"$warm_index"' && $2 > m { m = $2 } END { print m }')
echo "summary: minutes=$minutes errors=$errors rss_kib warm=$warm_rss end=$end_rss max_after_warmup=$max_rss fds warm=$warm_fds end=$end_fds"
status=0
(( errors == 0 )) || { echo "FAIL: $errors failed requests"; status=1; }
(( end_rss * 10 <= warm_rss * 11 )) || { echo "FAIL: RSS grew from $warm_rss to $end_rss KiB"; status=1; }
(( end_fds <= warm_fds + 4 )) || { echo "FAIL: fds grew from $warm_fds to $end_fds"; status=1; }
exit $status
