# Sourced by the benchmark scripts: a private NGINX upstream answering every path with a small
# JSON document, as a daemon with its files in a work directory.
#   start_upstream WORK NAME PORT BODY [worker_connections, default 1024]
# writes WORK/NAME.conf, starts NGINX on 127.0.0.1:PORT, its pid in WORK/NAME.pid.
#   stop_upstream WORK NAME
start_upstream() {
  cat > "$1/$2.conf" <<CONF
worker_processes 1;
daemon on;
pid $1/$2.pid;
error_log $1/$2.err;
events { worker_connections ${5:-1024}; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$3;
    keepalive_requests 1000000;
    location / { default_type application/json; return 200 '$4'; }
  }
}
CONF
  nginx -c "$1/$2.conf"
}

stop_upstream() { [[ -f $1/$2.pid ]] && kill "$(cat "$1/$2.pid")" 2>/dev/null || true; }
