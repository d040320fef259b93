"""An OTLP receiver for Lumen's tests, built from the official protos
(PyPI opentelemetry-proto) and grpcio, independent of Lumen's code.

Serves the gRPC LogsService and MetricsService Export, and HTTP POST
/v1/logs and /v1/metrics with protobuf bodies (gzip if Content-Encoding
says so), on loopback. Every request it receives is written to --out as
one JSON line:

    {"signal": "logs"|"metrics", "transport": "grpc"|"http",
     "headers": {name: value}, "request": <the request, protobuf JSON>}

With --refuse it answers every export UNAVAILABLE (HTTP 503) and records
nothing. With --count-only a line holds the number of log records or
metric data points instead of the request ({"signal", "transport",
"records"}), for benchmarks. Prints "READY grpc=<port> http=<port>" once listening; stops on
SIGTERM or SIGINT. Run by export/tests/otlp.rs with the venv that
export/tests/otlp/setup.sh makes.
"""

import argparse
import gzip
import json
import signal
import ssl
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc


def records(signal_name, request):
    if signal_name == "logs":
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    return sum(len(sm.metrics) for rm in request.resource_metrics for sm in rm.scope_metrics)


class Recorder:
    def __init__(self, path, count_only):
        self.lock = threading.Lock()
        self.out = open(path, "a", encoding="utf-8")
        self.count_only = count_only

    def record(self, signal_name, transport, headers, request):
        if self.count_only:
            line = json.dumps({"signal": signal_name, "transport": transport, "records": records(signal_name, request)})
            with self.lock:
                self.out.write(line + "\n")
                self.out.flush()
            return
        line = json.dumps(
            {
                "signal": signal_name,
                "transport": transport,
                "headers": headers,
                "request": json.loads(json_format.MessageToJson(request, indent=None)),
            },
            sort_keys=True,
        )
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


def grpc_headers(context):
    return {k: v for k, v in context.invocation_metadata() if not k.endswith("-bin")}


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, recorder, refuse):
        self.recorder, self.refuse = recorder, refuse

    def Export(self, request, context):
        if self.refuse:
            context.abort(grpc.StatusCode.UNAVAILABLE, "refusing, as told")
        self.recorder.record("logs", "grpc", grpc_headers(context), request)
        return logs_service_pb2.ExportLogsServiceResponse()


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, recorder, refuse):
        self.recorder, self.refuse = recorder, refuse

    def Export(self, request, context):
        if self.refuse:
            context.abort(grpc.StatusCode.UNAVAILABLE, "refusing, as told")
        self.recorder.record("metrics", "grpc", grpc_headers(context), request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


ROUTES = {
    "/v1/logs": ("logs", logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
    "/v1/metrics": (
        "metrics",
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
}


def http_handler(recorder, refuse):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def reply(self, status, body=b"", content_type="application/x-protobuf"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            route = ROUTES.get(self.path)
            if route is None:
                return self.reply(404, b"no such path", "text/plain")
            if refuse:
                return self.reply(503, b"refusing, as told", "text/plain")
            if self.headers.get("Content-Encoding", "") == "gzip":
                body = gzip.decompress(body)
            signal_name, request_type, response_type = route
            request = request_type()
            request.ParseFromString(body)
            headers = {k.lower(): v for k, v in self.headers.items()}
            recorder.record(signal_name, "http", headers, request)
            self.reply(200, response_type().SerializeToString())

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="file the JSON lines are appended to")
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--refuse", action="store_true", help="answer every export UNAVAILABLE / 503")
    parser.add_argument("--count-only", action="store_true", help="write how many records each request held, not the request")
    parser.add_argument("--tls-cert", help="serve both ports over TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    args = parser.parse_args()

    recorder = Recorder(args.out, args.count_only)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(recorder, args.refuse), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(recorder, args.refuse), server)
    if args.tls_cert:
        with open(args.tls_key, "rb") as key, open(args.tls_cert, "rb") as cert:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        grpc_port = server.add_secure_port(f"127.0.0.1:{args.grpc_port}", credentials)
    else:
        grpc_port = server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
    if grpc_port == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.grpc_port} for gRPC")
    server.start()

    http = ThreadingHTTPServer(("127.0.0.1", args.http_port), http_handler(recorder, args.refuse))
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        http.socket = context.wrap_socket(http.socket, server_side=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"READY grpc={grpc_port} http={http.server_address[1]}", flush=True)
    done.wait()
    http.shutdown()
    server.stop(grace=0).wait()


if __name__ == "__main__":
    main()
