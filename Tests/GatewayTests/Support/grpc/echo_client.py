"""A real gRPC client (grpcio) that calls demo.Echo through the gateway and prints one
JSON line per call: {"call", "ok", "code", "details", "replies", "trailers"}.

    python3 echo_client.py HOST:PORT CALL [ARG] [--timeout SECONDS] [--meta k=v ...]

CALL: unary, server-stream, client-stream, bidi, health."""
import argparse
import json
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ident = lambda b: b


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
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
