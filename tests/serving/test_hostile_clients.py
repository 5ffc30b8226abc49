"""What a load balancer in front of `mbt serve` meets, sent to a real server process over
loopback (raw sockets, bounded counts and time; small limits set by `mbt serve`'s flags): every
malformed request gets its 4xx status line and {"error": ...}, normal requests keep being
answered meanwhile, slow and idle connections take no thread and are closed after the idle
timeout, a client past the connection cap waits for a free one, an over-limit body leaves the
server's memory where it was, and gRPC refuses a message over the same limit in the same words."""
import json
import re
import socket
import threading
import time

import grpc
import numpy as np
import pytest

from mbt_keras import contract
from serving.client import predict_request
from serving.rest_api import json_too_deep
from tests.serving.conftest import MODEL_NAME, serving
from tests.serving.doors import GrpcDoor, RestDoor, to_json

LIMIT = 2_000_000  # --max-request-bytes: a real clip's JSON request (~0.7 MB) fits
TIMEOUT = 2  # --rest-idle-timeout
MAX_CONNECTIONS = 16  # --rest-max-connections
SLOW_CLIENTS = 10
PREDICT = f"POST /v1/models/{MODEL_NAME}:predict HTTP/1.1\r\nHost: mbt\r\n".encode()
STATUS = f"GET /v1/models/{MODEL_NAME} HTTP/1.1\r\nHost: mbt\r\n\r\n".encode()
# The first bytes of a TLS 1.2 ClientHello: what a client that speaks HTTPS sends first.
CLIENT_HELLO = bytes.fromhex("16030100c4010000c00303") + bytes(range(189))


def _chunked(*sizes: int, bad: bytes = b"") -> bytes:
    return b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"%x\r\n" % size + b"1" * size + b"\r\n" for size in sizes) + bad + b"0\r\n\r\n"


# problem: (bytes sent, status, regex of the {"error": ...} message)
CASES = {
    "Content-Length not a number": (PREDICT + b"Content-Length: abc\r\n\r\n{}", 400,
                                    r"^Content-Length is invalid$"),
    "negative Content-Length": (PREDICT + b"Content-Length: -5\r\n\r\n{}", 400,
                                r"^Content-Length is invalid$"),
    "POST without Content-Length": (PREDICT + b"\r\n", 411, r"needs a Content-Length header"),
    "200,000 nested lists": (PREDICT + b"Content-Length: 200000\r\n\r\n" + b"[" * 200_000, 400,
                             r"^JSON parse error: nested deeper than 64 levels$"),
    "not JSON": (PREDICT + b"Content-Length: 9\r\n\r\n{'a': 1}}", 400, r"^JSON parse error: "),
    "empty body": (PREDICT + b"Content-Length: 0\r\n\r\n", 400, r"the request body is empty"),
    "TLS ClientHello": (CLIENT_HELLO, 400, r"^not an HTTP request"),
    "Content-Length over the limit": (PREDICT + b"Content-Length: 300000000\r\n\r\n", 413,
                                      rf"^Received message larger than max \(300000000 vs\. "
                                      rf"{LIMIT}\)$"),
    "chunked body over the limit": (PREDICT + _chunked(LIMIT // 2, LIMIT // 2 + 1000), 413,
                                    rf"^Received message larger than max \(\d+ vs\. {LIMIT}\)$"),
    "chunk size not hex": (PREDICT + _chunked(5, bad=b"zz\r\nabc\r\n"), 400,
                           r"^Invalid chunk size$"),
    "headers too long": (STATUS[:-2] + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431,
                         r"exceeds max_header"),
    "HTTP/0.9 request line": (f"GET /v1/models/{MODEL_NAME}\r\n\r\n".encode(), 400,
                              r"^HTTP/0\.9 is not served"),
    "unknown HTTP version": (STATUS.replace(b"HTTP/1.1", b"HTTP/3.7"), 400,
                             r"^HTTP/3\.7 is not served"),
    "wrong method": (STATUS.replace(b"GET", b"PUT"), 400, r"^Malformed request: PUT /v1/models"),
    "GET of the predict verb": (PREDICT.replace(b"POST", b"GET") + b"\r\n", 400,
                                r"^Malformed request: GET"),
}


@pytest.fixture(scope="module")
def hostile(exported, tmp_path_factory):
    """(target, REST port, pid) of a server with small limits."""
    with serving(exported[1], tmp_path_factory.mktemp("hostile_base"),
                 "--max-request-bytes", str(LIMIT), "--rest-idle-timeout", str(TIMEOUT),
                 "--rest-max-connections", str(MAX_CONNECTIONS)) as (target, _, _, url, pid):
        yield target, int(url.rsplit(":", 1)[1]), pid


def _connect(port: int, timeout: float = 15.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _read_answer(sock: socket.socket, data: bytes = b""):
    """(status line, JSON answer, bytes after it) of the next answer on `sock`."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"closed without an answer after {data[:200]!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"\r\nContent-Length: (\d+)", head, re.I).group(1))
    while len(rest) < length:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"closed in the middle of {head!r}")
        rest += chunk
    return head.split(b"\r\n")[0].decode(), json.loads(rest[:length]), rest[length:]


def _exchange(port: int, data: bytes, half_close: bool = False):
    with _connect(port) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        status, answer, _ = _read_answer(sock)
        return status, answer


def _closed_at(sock: socket.socket) -> float:
    """time.monotonic() when the server has closed `sock` (reading what it sends first)."""
    while sock.recv(1 << 16):
        pass
    return time.monotonic()


def _server_threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1)) / 1024


class _NormalClient(threading.Thread):
    """Predicts on a real clip over REST back to back until stopped; counts answers and
    anything else."""

    def __init__(self, port: int, request: dict):
        super().__init__(daemon=True)
        self.door, self.request = RestDoor(f"http://127.0.0.1:{port}"), request
        self.answered, self.failures, self.stop = 0, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.door.predict(self.request)
                self.answered += 1
            except Exception as exc:  # noqa: BLE001 - recorded, asserted empty
                self.failures.append(repr(exc))


def test_each_malformed_request_gets_its_4xx_while_normal_requests_keep_being_answered(
        hostile, clip_request):
    _, port, _ = hostile
    assert len(json.dumps({"inputs": {k: to_json(v) for k, v in clip_request.items()}})) < LIMIT
    normal = _NormalClient(port, clip_request)
    normal.start()
    try:
        _wait_for(lambda: normal.answered or normal.failures)
        answered_before = normal.answered
        for problem, (data, status, message) in CASES.items():
            line, answer = _exchange(port, data)
            assert line.split(" ", 2)[1] == str(status), (problem, line, answer)
            assert set(answer) == {"error"} and re.search(message, answer["error"]), (
                problem, answer)
        # a good request followed by garbage on the same connection: the answer, then a 400
        with _connect(port) as sock:
            sock.sendall(STATUS + b"\x00\x01 garbage\r\n\r\n")
            first, answer, rest = _read_answer(sock)
            assert first == "HTTP/1.1 200 OK" and answer["model_version_status"]
            second, answer, _ = _read_answer(sock, rest)
            assert second.endswith("400 Bad Request") and "not an HTTP request" in answer["error"]
        # a client that half-closes its socket after the request still gets the answer
        line, answer = _exchange(port, STATUS, half_close=True)
        assert line == "HTTP/1.1 200 OK" and answer["model_version_status"][0]["version"] == "1"
        _wait_for(lambda: normal.answered > answered_before or normal.failures)
    finally:
        normal.stop.set()
        normal.join(timeout=120)
    assert normal.failures == [] and normal.answered > answered_before, (
        normal.answered, normal.failures)


def _wait_for(condition, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_slow_and_idle_connections_take_no_thread_and_are_closed_after_the_timeout(
        hostile, clip_request):
    _, port, pid = hostile
    RestDoor(f"http://127.0.0.1:{port}").predict(clip_request)  # TensorFlow's threads exist
    threads = _server_threads(pid)
    idle, idle_since = _connect(port), time.monotonic()
    between = _connect(port)
    between.sendall(STATUS)
    assert _read_answer(between)[0] == "HTTP/1.1 200 OK"  # kept alive, then silent
    between_since, slow = time.monotonic(), []
    for _ in range(SLOW_CLIENTS):  # headers, then a trickle of body
        sock = _connect(port)
        sock.sendall(PREDICT + b"Content-Length: 100000\r\n\r\n{")
        slow.append(sock)
    for _ in range(3):
        time.sleep(TIMEOUT / 4)
        for sock in slow:
            sock.sendall(b" ")
    slow_since = time.monotonic()
    assert _server_threads(pid) <= threads + 1  # not one per connection
    outputs, _ = RestDoor(f"http://127.0.0.1:{port}").predict(clip_request)  # still answering
    assert outputs["scores"].shape == (1, 4)
    # waitress looks for silent connections once a second: closed within TIMEOUT + 2 s
    assert TIMEOUT - 0.1 < _closed_at(idle) - idle_since < TIMEOUT + 3
    assert TIMEOUT - 0.1 < _closed_at(between) - between_since < TIMEOUT + 3
    for sock in slow:  # once the trickle stops: 408, then closed
        line, answer, _ = _read_answer(sock)
        assert line.endswith("408 Request Timeout") and "--rest-idle-timeout" in answer["error"]
        assert TIMEOUT - 0.1 < _closed_at(sock) - slow_since < TIMEOUT + 3
    for sock in [idle, between] + slow:
        sock.close()


def test_past_the_connection_cap_a_client_waits_for_a_free_connection(hostile):
    _, port, _ = hostile
    time.sleep(TIMEOUT + 2)  # the connections of the tests before have been closed
    held = [_connect(port) for _ in range(MAX_CONNECTIONS)]
    began = time.monotonic()
    with _connect(port) as waiting:  # the kernel accepts it; the server does not yet
        waiting.sendall(STATUS)
        waiting.settimeout(1.0)
        with pytest.raises(socket.timeout):
            waiting.recv(1)
        waiting.settimeout(TIMEOUT + 10)
        line, _, _ = _read_answer(waiting)  # once the held ones time out
    assert line == "HTTP/1.1 200 OK" and time.monotonic() - began > TIMEOUT - 0.5
    for sock in held:
        sock.close()


def test_over_limit_bodies_leave_the_memory_where_it_was_and_grpc_refuses_in_the_same_words(
        hostile, clip_request):
    target, port, pid = hostile
    before = _rss_mb(pid)
    for _ in range(3):
        with _connect(port) as sock:  # 300 MB announced and sent: refused at the headers
            sock.sendall(PREDICT + b"Content-Length: 300000000\r\n\r\n")
            try:
                for _ in range(300):
                    sock.sendall(b"1" * 1_000_000)
            except OSError:  # the server closed after its 413
                pass
        line, _ = _exchange(port, PREDICT + _chunked(*[LIMIT // 4] * 5))
        assert line.endswith("413 Request Entity Too Large")
    assert _rss_mb(pid) - before < 50, (before, _rss_mb(pid))
    rest = _exchange(port, PREDICT + f"Content-Length: {LIMIT + 1}\r\n\r\n".encode())[1]["error"]
    door = GrpcDoor(target)
    big = {**clip_request, "frames": np.array([[b"\xff\xd8" + b"0" * LIMIT] * 4], dtype=object)}
    with pytest.raises(grpc.RpcError) as refused:
        door.client.stub.Predict(predict_request(big, MODEL_NAME, contract.SIG_SERVING, None),
                                 timeout=60)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    words = r"Received message larger than max \((\d+) vs\. (\d+)\)"
    assert re.fullmatch(words, rest).groups() == (str(LIMIT + 1), str(LIMIT))
    assert re.search(words, refused.value.details()).group(2) == str(LIMIT)
    assert door.predict(clip_request)[0]["scores"].shape == (1, 4)  # under the limit: answered
    assert _rss_mb(pid) - before < 50
    door.close()


def test_the_depth_scan_counts_brackets_outside_strings_only():
    assert json_too_deep(b"[" * 65) and not json_too_deep(b"[" * 64 + b"]" * 64)
    assert not json_too_deep(b'{"a": "[[[[[[[["}', limit=1)
    escaped_quote = b'{"a": "\\"[[[[", "b": [[1]]}'  # the string goes on past \"
    assert json_too_deep(escaped_quote, limit=2) and not json_too_deep(escaped_quote, limit=3)
    escaped_backslash = b'["\\\\", ' + b"[" * 5  # \\ ends in a backslash; the quote closes
    assert json_too_deep(escaped_backslash, limit=5) and not json_too_deep(escaped_backslash,
                                                                          limit=6)
    across_chunks = b'["' + b"[" * 600_000 + b'", [[1]]]'  # a string over three scan chunks
    assert json_too_deep(across_chunks, limit=2) and not json_too_deep(across_chunks, limit=3)
