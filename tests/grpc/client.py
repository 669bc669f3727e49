"""The gRPC client of the tracer's end-to-end tests: one insecure (h2c) channel, calls
one after another, each with its own `x-request-id` and the bearer token of the
environment variable GRPC_TEST_TOKEN as `authorization` metadata.

Prints one JSON line per call, what the client saw:
  {"request_id": "...", "method": "/svc/M", "code": "OK", "details": "...", "replies": N}

Usage: client.py PORT
"""

import json
import os
import sys

import grpc

ECHO = "tracer.test.Echo"
LOOKUP = "tracer.test.Lookup"


def identity(b):
    return b


def main():
    port = int(sys.argv[1])
    token = os.environ["GRPC_TEST_TOKEN"]
    # No retries: one call is one HTTP/2 stream.
    options = [("grpc.enable_retries", 0)]
    channel = grpc.insecure_channel("127.0.0.1:%d" % port, options=options)
    grpc.channel_ready_future(channel).result(timeout=15)
    seq = [0]

    def call(kind, method, request, timeout=15, cancel_after_headers=False):
        seq[0] += 1
        request_id = "grpc-call-%d" % seq[0]
        metadata = (
            ("x-request-id", request_id),
            ("authorization", "Bearer " + token),
        )
        make = getattr(channel, kind)
        stub = make(method, request_serializer=identity, response_deserializer=identity)
        out = {"request_id": request_id, "method": method}
        try:
            result = stub(request, timeout=timeout, metadata=metadata)
            if cancel_after_headers:
                # The server's HEADERS arrived: the stream is open on both ends.
                result.initial_metadata()
                result.cancel()
            if kind.endswith("_stream"):
                result = list(result)
                out["replies"] = len(result)
            else:
                out["replies"] = 1
            out["code"] = "OK"
            out["details"] = ""
        except grpc.RpcError as e:
            out["code"] = e.code().name
            out["details"] = e.details() or ""
        print(json.dumps(out), flush=True)

    call("unary_unary", "/%s/Unary" % ECHO, b"hello")
    call("unary_stream", "/%s/ServerStream" % ECHO, b"4")
    call("stream_unary", "/%s/ClientStream" % ECHO, iter([b"a", b"bb", b"ccc"]))
    call("stream_stream", "/%s/Chat" % ECHO, iter([b"one", b"two"]))
    call("unary_unary", "/%s/Get" % LOOKUP, b"missing-key")
    call("unary_stream", "/%s/FailMidStream" % ECHO, b"go")
    call("unary_unary", "/%s/Slow" % ECHO, b"late", timeout=0.3)
    call("unary_stream", "/%s/UntilCancelled" % ECHO, b"wait", cancel_after_headers=True)
    # A last call on the same connection after the deadline: the connection lives on.
    call("unary_unary", "/%s/Unary" % ECHO, b"after")
    channel.close()


if __name__ == "__main__":
    main()
