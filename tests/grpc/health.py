"""A real gRPC peer for sluice's tests: the standard grpc.health.v1 service (grpcio).

    health.py serve --port P [--tls CERT KEY]   # prints "listening on P", serves until killed
    health.py check --target HOST:PORT --authority NAME [--service S] [--count N]
        # unary Check calls; prints the status of each, exits non-zero on any error
"""
import argparse
import sys
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def serve(args):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("sluice.test", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    addr = f"127.0.0.1:{args.port}"
    if args.tls:
        cert, key = (open(p, "rb").read() for p in args.tls)
        server.add_secure_port(addr, grpc.ssl_server_credentials([(key, cert)]))
    else:
        server.add_insecure_port(addr)
    server.start()
    print(f"listening on {args.port}", flush=True)
    server.wait_for_termination()


def check(args):
    options = [("grpc.default_authority", args.authority)]
    with grpc.insecure_channel(args.target, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(args.count):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=5)
            print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status), flush=True)
            time.sleep(0.01)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    c = sub.add_parser("check")
    c.add_argument("--target", required=True)
    c.add_argument("--authority", required=True)
    c.add_argument("--service", default="sluice.test")
    c.add_argument("--count", type=int, default=3)
    args = p.parse_args()
    try:
        serve(args) if args.cmd == "serve" else check(args)
    except grpc.RpcError as e:
        print(f"rpc error: {e.code()} {e.details()}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
