"""A real gRPC client (grpcio) that calls demo.Echo through the gateway and prints one
JSON line per call: {"call", "ok", "code", "details", "replies", "trailers"}.

    python3 echo_client.py HOST:PORT CALL [ARG] [--timeout SECONDS] [--meta k=v ...]

CALL: unary, server-stream, client-stream, bidi, health; parallel ("N:MESSAGE": N unary
calls at once, "elapsed" their time in seconds; any other call's "elapsed" is its own);
web and web-text (gRPC-Web over HTTP/1.1, unary, the
response frames decoded by hand: "replies" and "trailers" from the trailer frame)."""
import base64
import http.client
import struct
import time
from concurrent import futures
import argparse
import json
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ident = lambda b: b


def web(args, out):
    """A gRPC-Web unary call as a browser library makes it: POST, the framed message (base64
    for -text), the response's frames read back: 0x00 data, 0x80 trailers."""
    text = args.call == "web-text"
    kind = "application/grpc-web-text" if text else "application/grpc-web+proto"
    message = args.arg.encode()
    body = struct.pack(">BI", 0, len(message)) + message
    if text:
        body = base64.b64encode(body)
    host, port = args.address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=args.timeout)
    headers = {"content-type": kind, "x-grpc-web": "1", "accept": kind}
    headers.update(dict(m for m in (tuple(x.split("=", 1)) for x in args.meta)))
    conn.request("POST", "/demo.Echo/Unary", body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    out["status"] = r.status
    out["content_type"] = r.getheader("content-type") or ""
    if text:
        # Each base64 run may end in padding: decode run by run.
        raw = decode_runs(data)
    else:
        raw = data
    replies, trailers = [], {}
    i = 0
    while i + 5 <= len(raw):
        flag, n = struct.unpack(">BI", raw[i : i + 5])
        payload = raw[i + 5 : i + 5 + n]
        i += 5 + n
        if flag & 0x80:
            for line in payload.decode().split("\r\n"):
                if ":" in line:
                    k, v = line.split(":", 1)
                    trailers[k.strip().lower()] = v.strip()
        else:
            replies.append(payload.decode())
    for k in ("grpc-status", "grpc-message"):
        if r.getheader(k) is not None:
            trailers.setdefault(k, r.getheader(k))
    out["replies"] = replies
    out["trailers"] = trailers
    status = trailers.get("grpc-status", "")
    out["ok"] = status == "0"
    out["code"] = grpc.StatusCode.OK.name if status == "0" else status
    out["details"] = trailers.get("grpc-message", "")


def decode_runs(data):
    """base64 text that may be several padded runs one after the other."""
    raw = b""
    run = b""
    for c in data:
        run += bytes([c])
        if len(run) % 4 == 0 and run.endswith(b"="):
            raw += base64.b64decode(run)
            run = b""
    if run:
        raw += base64.b64decode(run)
    return raw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("address")
    ap.add_argument("call")
    ap.add_argument("arg", nargs="?", default="hello")
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--meta", action="append", default=[])
    args = ap.parse_args()
    meta = [tuple(m.split("=", 1)) for m in args.meta]
    out = {"call": args.call, "ok": True, "code": "OK", "details": "", "replies": [], "trailers": {}}
    with grpc.insecure_channel(args.address) as ch:
        call_started = time.monotonic()
        try:
            if args.call == "unary":
                f = ch.unary_unary("/demo.Echo/Unary", ident, ident)
                reply, call = f.with_call(args.arg.encode(), timeout=args.timeout, metadata=meta)
                out["replies"] = [reply.decode()]
                out["trailers"] = dict(call.trailing_metadata() or ())
            elif args.call == "server-stream":
                f = ch.unary_stream("/demo.Echo/ServerStream", ident, ident)
                it = f(args.arg.encode(), timeout=args.timeout, metadata=meta)
                out["replies"] = [r.decode() for r in it]
                out["trailers"] = dict(it.trailing_metadata() or ())
            elif args.call == "client-stream":
                f = ch.stream_unary("/demo.Echo/ClientStream", ident, ident)
                parts = [p.encode() for p in args.arg.split(",")]
                reply, call = f.with_call(iter(parts), timeout=args.timeout, metadata=meta)
                out["replies"] = [reply.decode()]
            elif args.call == "bidi":
                f = ch.stream_stream("/demo.Echo/Bidi", ident, ident)
                parts = [p.encode() for p in args.arg.split(",")]
                out["replies"] = [r.decode() for r in f(iter(parts), timeout=args.timeout, metadata=meta)]
            elif args.call == "parallel":
                n, message = args.arg.split(":", 1)
                f = ch.unary_unary("/demo.Echo/Unary", ident, ident)
                started = time.monotonic()
                calls = [f.future(message.encode(), timeout=args.timeout, metadata=meta) for _ in range(int(n))]
                out["replies"] = [c.result().decode() for c in calls]
                out["elapsed"] = time.monotonic() - started
            elif args.call in ("web", "web-text"):
                web(args, out)
            elif args.call == "health":
                stub = health_pb2_grpc.HealthStub(ch)
                r = stub.Check(health_pb2.HealthCheckRequest(service=args.arg if args.arg != "hello" else ""), timeout=args.timeout)
                out["replies"] = [health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)]
            else:
                raise SystemExit(f"unknown call {args.call}")
        except grpc.RpcError as e:
            out["ok"] = False
            out["code"] = e.code().name
            out["details"] = e.details() or ""
            try:
                out["trailers"] = dict(e.trailing_metadata() or ())
            except Exception:
                pass
    # The call's own time (not the interpreter's start): "elapsed", unless the call set it.
    out.setdefault("elapsed", time.monotonic() - call_started)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
