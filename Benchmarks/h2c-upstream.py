#!/usr/bin/env python3
"""HTTP/2 to an HTTP/2 upstream (issue 23): h2load (h2c, prior knowledge) against the gateway
and the reference proxies, each forwarding over h2c to the same upstream, in one run.

    Benchmarks/h2c-upstream.py [--rounds 3] [--seconds 10] [--conns 16] [--streams 10]
                               [--workers 2] [--gateway PATH]

- upstream: NGINX on loopback, `listen ... http2` (h2c), a fixed ~20-byte answer;
- nginx: `grpc_pass grpc://` (NGINX's only HTTP/2 upstream), keepalive pool;
- haproxy: `bind ... proto h2`, `server ... proto h2`, `http-reuse always`;
- gateway: an `http2` cleartext listener, `protocol: h2c` upstream (release build,
  `swift build -c release`; --gateway points at another binary).

Every proxy gets --workers worker processes/threads/event loops. Targets are interleaved
(the order rotates each round); the table gives the median req/s with min-max, h2load's
mean latency, and the proxy's CPU time per request (utime+stime of its processes over the
run, from /proc). Run from the project's root; everything listens on 127.0.0.1.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, log, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}:\n" + open(log).read())


def cpu_seconds(pids):
    """utime+stime of the processes and their children, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
        except OSError:
            pass
    return total / tick


def descendants(pid):
    out = [pid]
    try:
        for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
            out += descendants(int(child))
    except OSError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--gateway", default=".build/release/gateway")
    args = ap.parse_args()
    for tool in ("nginx", "haproxy", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed (Debian: nginx, haproxy, nghttp2-client)")
    if not os.path.exists(args.gateway):
        sys.exit(f"{args.gateway}: build it first (swift build -c release --product gateway)")
    tmp = tempfile.mkdtemp(prefix="h2c-bench.")
    procs = []

    def start(cmd, **kw):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "stderr.log"), "a"), **kw)
        procs.append(p)
        return p

    up, ngx, hap, gw = free_port(), free_port(), free_port(), free_port()
    nginx_conf = lambda name, body: open(os.path.join(tmp, name), "w").write(
        f"""worker_processes {{w}};
pid {tmp}/{name}.pid; error_log {tmp}/{name}.err;
events {{ worker_connections 4096; }}
http {{ access_log off; {body} }}
""".replace("{w}", "1" if name == "upstream.conf" else str(args.workers)))
    nginx_conf("upstream.conf", f"""
  server {{ listen 127.0.0.1:{up} http2; http2_max_concurrent_streams 1000; keepalive_requests 100000000;
           location / {{ return 200 '{{"ok":true}}'; }} }}""")
    nginx_conf("proxy.conf", f"""
  upstream up {{ server 127.0.0.1:{up}; keepalive 256; }}
  server {{ listen 127.0.0.1:{ngx} http2; keepalive_requests 100000000;
           location / {{ grpc_pass grpc://up; }} }}""")
    open(os.path.join(tmp, "haproxy.cfg"), "w").write(f"""global
  nbthread {args.workers}
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:{hap} proto h2
  default_backend be
backend be
  server s1 127.0.0.1:{up} proto h2
""")
    open(os.path.join(tmp, "gateway.json"), "w").write(f"""
{{ "listeners": [ {{ "name": "h2c", "address": "127.0.0.1:{gw}", "http2": true }} ],
  "server": {{ "workers": {args.workers}, "http2_max_concurrent_streams": 1000 }},
  "upstreams": {{ "up": {{ "protocol": "h2c", "targets": [ "http://127.0.0.1:{up}" ] }} }},
  "routes": [ {{ "name": "all", "match": {{ "path_prefix": "/" }}, "upstream": "up" }} ],
  "access_log": {{ "enabled": false }} }}
""")
    try:
        start(["nginx", "-c", os.path.join(tmp, "upstream.conf"), "-g", "daemon off;"])
        targets = {
            "nginx": (start(["nginx", "-c", os.path.join(tmp, "proxy.conf"), "-g", "daemon off;"]), ngx),
            "haproxy": (start(["haproxy", "-f", os.path.join(tmp, "haproxy.cfg")]), hap),
            "gateway": (start([args.gateway, "run", "--config", os.path.join(tmp, "gateway.json")]), gw),
        }
        for port in (up, ngx, hap, gw):
            wait_port(port, os.path.join(tmp, "stderr.log"))
        results = {name: [] for name in targets}
        names = list(targets)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                proc, port = targets[name]
                url = f"http://127.0.0.1:{port}/"
                subprocess.run(["h2load", "-c", str(args.conns), "-m", str(args.streams), "-t", "2", "-D", "2", url],
                               capture_output=True)  # warm-up
                pids = descendants(proc.pid)
                before = cpu_seconds(pids)
                out = subprocess.run(
                    ["h2load", "-c", str(args.conns), "-m", str(args.streams), "-t", "2", "-D", str(args.seconds), url],
                    capture_output=True, text=True).stdout
                used = cpu_seconds(pids) - before
                done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
                rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
                mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
                codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
                if not (done and rps and codes):
                    sys.exit(f"{name}: h2load printed\n{out}")
                non2xx = sum(int(codes.group(i)) for i in (2, 3, 4))
                results[name].append({
                    "rps": float(rps.group(1)), "failed": int(done.group(3)), "non2xx": non2xx,
                    "mean": mean.group(1) if mean else "?", "cpu_us": used * 1e6 / max(1, int(done.group(1))),
                })
                print(f"round {r + 1} {name}: {float(rps.group(1)):,.0f} req/s, {used * 1e6 / max(1, int(done.group(1))):.1f} CPU us/req",
                      file=sys.stderr)
        print(f"h2load -c {args.conns} -m {args.streams} -t 2 -D {args.seconds}, h2c to the proxy and from it to an h2c "
              f"NGINX upstream; {args.workers} workers each; {args.rounds} rounds, medians\n")
        print("| target | req/s | min - max | mean latency | CPU us/req | failed | non-2xx |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        med = {}
        for name in names:
            rs = results[name]
            med[name] = statistics.median(x["rps"] for x in rs)
            print(f"| {name} | {med[name]:,.0f} | {min(x['rps'] for x in rs):,.0f} - {max(x['rps'] for x in rs):,.0f} | "
                  f"{rs[len(rs) // 2]['mean']} | {statistics.median(x['cpu_us'] for x in rs):.1f} | "
                  f"{sum(x['failed'] for x in rs)} | {sum(x['non2xx'] for x in rs)} |")
        print(f"\ngateway / haproxy: {med['gateway'] / med['haproxy']:.2f}x req/s; gateway / nginx: {med['gateway'] / med['nginx']:.2f}x")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
