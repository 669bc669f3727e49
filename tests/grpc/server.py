"""A gRPC server over h2c (no TLS) for the tracer's end-to-end tests.

Generic handlers with bytes in and out: no .proto file, no generated code. Every call
it handles is logged as one JSON line to the log file, the ground truth the tracer's
records are compared with:

  {"method": "/svc/M", "code": "OK", "code_value": 0, "pid": ..., "peer": "ipv4:...",
   "request_id": "...", "request_bytes": N, "response_bytes": N}

`request_bytes` and `response_bytes` count gRPC's length-prefixed messages (5 bytes of
prefix each, no compression): what the HTTP/2 DATA frames of the stream carry.

Usage: server.py PORT LOG
"""

import json
import os
import sys
import threading
from concurrent import futures

import grpc

ECHO = "tracer.test.Echo"
LOOKUP = "tracer.test.Lookup"
# Metadata a client sends that must never be logged by anyone (the tracer included).
SECRET_HEADERS = ("authorization",)

log_lock = threading.Lock()
log_file = None


def framed(messages):
    """Bytes on the wire of these messages: a 5-byte prefix each."""
    return sum(5 + len(m) for m in messages)


def log_call(method, context, code, requests, responses, peer=None):
    metadata = dict(context.invocation_metadata())
    line = {
        "method": method,
        "code": code.name,
        "code_value": code.value[0],
        "pid": os.getpid(),
        # Once the call has ended the peer is gone: a late logger passes it in.
        "peer": peer or context.peer(),
        "request_id": metadata.get("x-request-id", ""),
        # Whether the client sent the header, never its value.
        "authorization_seen": all(h in metadata for h in SECRET_HEADERS),
        "request_bytes": framed(requests),
        "response_bytes": framed(responses),
    }
    with log_lock:
        log_file.write(json.dumps(line) + "\n")
        log_file.flush()


def unary(method, behaviour):
    def handle(request, context):
        return behaviour(method, request, context)

    return grpc.unary_unary_rpc_method_handler(handle)


def echo(method, request, context):
    reply = b"echo:" + request
    log_call(method, context, grpc.StatusCode.OK, [request], [reply])
    return reply


def not_found(method, request, context):
    # No message before the status: a trailers-only response (one HEADERS frame with
    # :status 200, grpc-status and END_STREAM).
    log_call(method, context, grpc.StatusCode.NOT_FOUND, [request], [])
    context.abort(grpc.StatusCode.NOT_FOUND, "no such key: " + request.decode())


def slow(method, request, context):
    """Answers only after the call has ended: the client's deadline passes first."""
    peer = context.peer()
    ended = threading.Event()
    context.add_callback(ended.set)
    # A hang guard, far beyond any deadline the client sets.
    ended.wait(30)
    remaining = context.time_remaining()
    # The client's RST_STREAM may end the call a moment before this server's own timer
    # does: within 100 ms of the deadline, the deadline is what ended it.
    code = (
        grpc.StatusCode.DEADLINE_EXCEEDED
        if remaining is not None and remaining <= 0.1
        else grpc.StatusCode.CANCELLED
    )
    log_call(method, context, code, [request], [], peer)
    return b""


def until_cancelled(method, request, context):
    """Sends its headers, then waits for the client to cancel the call."""
    peer = context.peer()
    ended = threading.Event()
    context.add_callback(ended.set)
    context.send_initial_metadata(())
    ended.wait(30)
    log_call(method, context, grpc.StatusCode.CANCELLED, [request], [], peer)
    return
    yield


def server_stream(method, request, context):
    count = int(request.decode())
    replies = [b"item-%d:" % i + b"x" * (100 * i) for i in range(count)]
    log_call(method, context, grpc.StatusCode.OK, [request], replies)
    yield from replies


def fail_mid_stream(method, request, context):
    # Headers and one message first, so the status comes in real trailers.
    reply = b"partial answer"
    log_call(method, context, grpc.StatusCode.RESOURCE_EXHAUSTED, [request], [reply])
    yield reply
    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota gone after one item")


def client_stream(method, request_iterator, context):
    requests = list(request_iterator)
    reply = b"got %d" % len(requests)
    log_call(method, context, grpc.StatusCode.OK, requests, [reply])
    return reply


def chat(method, request_iterator, context):
    requests, replies = [], []
    for request in request_iterator:
        requests.append(request)
        replies.append(b"re:" + request)
        yield replies[-1]
    log_call(method, context, grpc.StatusCode.OK, requests, replies)


def main():
    global log_file
    port, log_path = int(sys.argv[1]), sys.argv[2]
    log_file = open(log_path, "a", encoding="utf-8")
    echo_service = grpc.method_handlers_generic_handler(
        ECHO,
        {
            "Unary": unary("/%s/Unary" % ECHO, echo),
            "Slow": unary("/%s/Slow" % ECHO, slow),
            "ServerStream": grpc.unary_stream_rpc_method_handler(
                lambda r, c: server_stream("/%s/ServerStream" % ECHO, r, c)
            ),
            "UntilCancelled": grpc.unary_stream_rpc_method_handler(
                lambda r, c: until_cancelled("/%s/UntilCancelled" % ECHO, r, c)
            ),
            "FailMidStream": grpc.unary_stream_rpc_method_handler(
                lambda r, c: fail_mid_stream("/%s/FailMidStream" % ECHO, r, c)
            ),
            "ClientStream": grpc.stream_unary_rpc_method_handler(
                lambda it, c: client_stream("/%s/ClientStream" % ECHO, it, c)
            ),
            "Chat": grpc.stream_stream_rpc_method_handler(
                lambda it, c: chat("/%s/Chat" % ECHO, it, c)
            ),
        },
    )
    lookup_service = grpc.method_handlers_generic_handler(
        LOOKUP, {"Get": unary("/%s/Get" % LOOKUP, not_found)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((echo_service, lookup_service))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("listening on %d, pid %d" % (port, os.getpid()), flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
