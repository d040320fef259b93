#!/usr/bin/env bash
# The OTLP test receiver's Python environment (export/tests/otlp/receiver.py):
# a venv at /opt/lumen-otlp-venv (or $LUMEN_OTLP_VENV) with the official
# OpenTelemetry protos, grpcio and protobuf from PyPI. Idempotent; run as
# root on Debian 12. export/tests/otlp.rs runs <venv>/bin/python.
set -euo pipefail

venv="${LUMEN_OTLP_VENV:-/opt/lumen-otlp-venv}"

if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi

if ! "$venv/bin/python" -c 'import grpc, google.protobuf, opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'opentelemetry-proto>=1.20' 'grpcio>=1.60' 'protobuf>=4.21'
fi

"$venv/bin/python" -c 'import grpc, opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc; print("OTLP test receiver environment ready:", grpc.__version__)'
