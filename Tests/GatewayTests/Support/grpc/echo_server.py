"""A real gRPC server (grpcio) for the gateway's tests and demo, without .proto files:
the methods of `demo.Echo` take and return raw bytes (the gateway never looks inside
messages), and grpc.health.v1 answers SERVING.

    python3 echo_server.py PORT [--name NAME] [--unavailable] [--max-streams N]
                                [--max-age-ms MS] [--tls CERT KEY]

Prints "ready PORT" once it serves. --unavailable answers every Echo call UNAVAILABLE
(a target for retry tests). --max-streams sets SETTINGS_MAX_CONCURRENT_STREAMS;
--max-age-ms sends GOAWAY on every connection that old; --tls serves h2 over TLS;
--not-serving says NOT_SERVING for demo.Echo in grpc.health.v1. Replies
carry the server's name so a test sees which target answered."""
import argparse
import sys
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ident = lambda b: b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--name", default="echo")
    ap.add_argument("--unavailable", action="store_true")
    ap.add_argument("--max-streams", type=int)
    ap.add_argument("--max-age-ms", type=int)
    ap.add_argument("--tls", nargs=2)
    ap.add_argument("--not-serving", action="store_true")
    args = ap.parse_args()
    name = args.name.encode()

    def check(context):
        if args.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "down for the test")

    def unary(request, context):
        check(context)
        md = dict(context.invocation_metadata())
        if request == b"fail":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "asked to fail: ünïcode")
        if request.startswith(b"sleep:"):
            time.sleep(float(request[6:]))
        context.set_trailing_metadata((("x-echo-trailer", "t-" + args.name),))
        return name + b":" + request + b":" + md.get("x-test", "").encode()

    def server_stream(request, context):
        check(context)
        # "N" or "N:interval"
        parts = request.split(b":")
        n = int(parts[0])
        interval = float(parts[1]) if len(parts) > 1 else 0
        for i in range(n):
            if interval:
                time.sleep(interval)
            yield name + b":" + str(i).encode()

    def client_stream(request_iterator, context):
        check(context)
        return name + b":" + b"+".join(request_iterator)

    def bidi(request_iterator, context):
        check(context)
        for r in request_iterator:
            yield b"echo:" + r

    handler = grpc.method_handlers_generic_handler(
        "demo.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, ident, ident),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi, ident, ident),
        },
    )
    options = []
    if args.max_streams:
        options.append(("grpc.max_concurrent_streams", args.max_streams))
    if args.max_age_ms:
        options += [("grpc.max_connection_age_ms", args.max_age_ms), ("grpc.max_connection_age_grace_ms", 5000)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    server.add_generic_rpc_handlers((handler,))
    hs = health.HealthServicer()
    hs.set("", health_pb2.HealthCheckResponse.SERVING)
    hs.set("demo.Echo", health_pb2.HealthCheckResponse.NOT_SERVING if args.not_serving else health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    if args.tls:
        cert, key = (open(f, "rb").read() for f in args.tls)
        port = server.add_secure_port(f"127.0.0.1:{args.port}", grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"ready {port}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
