"""The REST door's HTTP server: waitress, with the limits a server behind a public load balancer
needs, each a flag of `mbt serve` (docs/serving.md, "Limits").

waitress reads every socket in one asyncore loop and runs requests on a fixed pool of
`threads`, so an idle or slow client holds a socket, never a thread. Its own limits are used
as they are: a body over `max_request_bytes` is refused before it is read (Content-Length) or
as soon as a chunked body passes it, with 413; headers over MAX_HEADER_BYTES with 431; a bad
Content-Length or chunk size with 400; past `max_connections` open sockets it stops accepting,
so new clients wait in the listen backlog until one closes. What it lacks is added here, thinly:

- its refusals answer {"error": ...} as the API's do (`_JsonErrorTask`), 413 in the words gRPC
  uses for a message over its limit (`request_error.too_large`);
- bytes that cannot start an HTTP request (a TLS ClientHello, say) and HTTP versions other
  than 1.0/1.1 get 400 at once, not a wait for a blank line that never comes (`_Parser`);
- a connection silent for `idle_timeout` seconds is closed, with 408 when it stopped in the
  middle of a request (waitress closes it without a word, and only once no request runs).
"""
import http
import json
import logging
import re
import threading

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import BadRequest, RequestEntityTooLarge

from serving.request_error import too_large
from serving.rest_api import RestApi

LOG = logging.getLogger("mbt.serve")
MAX_HEADER_BYTES = 64 << 10  # request line + headers; a client of the API sends under 1 KB
# What an HTTP request can start with (after blank lines): a method token, then a space.
_REQUEST_START = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}(?: |\Z)")
_JSON = [("Content-Type", "application/json")]
DRAIN_READS = 16  # at most 1 MiB read and dropped before a connection closes


class RequestTimeout(BadRequest):
    code = 408
    reason = "Request Timeout"


class _Parser(HTTPRequestParser):
    """waitress's parser, refusing at the first bytes what is not HTTP/1.x."""

    def received(self, data):
        if self.body_rcv is None and not self.completed and len(self.header_plus) < 64:
            head = (self.header_plus + data[:64])[:64].lstrip()
            if head and not _REQUEST_START.match(head):
                self.parse_header(b"GET / HTTP/1.1\r\n")  # what the error task's answer needs
                self.error = BadRequest("not an HTTP request (does it speak TLS to a plain "
                                        "HTTP port?)")
                self.completed = True
                return len(data)
        return super().received(data)

    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        if self.version not in ("1.0", "1.1"):
            raise ParsingError(f"HTTP/{self.version or '0.9'} is not served: use HTTP/1.1")


class _JsonErrorTask(ErrorTask):
    """waitress's refusals as the API's: {"error": message}; the connection closes after."""

    def execute(self):
        error = self.request.error
        if isinstance(error, RequestEntityTooLarge):
            limit = self.channel.server.max_request_bytes
            message = str(too_large(max(self.request.content_length,
                                        self.request.body_bytes_received), limit))
        else:
            message = error.body
        LOG.warning("refused HTTP request: %d %s: %s", error.code, error.reason, message)
        body = json.dumps({"error": message}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend(_JSON)
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    parser_class = _Parser
    error_task_class = _JsonErrorTask

    def handle_close(self):
        """Read what the client already sent before closing: a socket closed with unread
        bytes sends a reset, which can destroy a refusal the client has not read yet."""
        try:
            for _ in range(DRAIN_READS):
                if not self.socket.recv(1 << 16):
                    break
        except OSError:  # nothing more to read now (non-blocking), or already closed
            pass
        super().handle_close()

    def time_out(self):
        """Close a connection silent for the idle timeout: at once between requests (as any
        keep-alive server does), after a 408 in the middle of one."""
        with self.requests_lock:
            request, self.request = self.request, None
            if request is None:
                self.will_close = True
                return
            if not request.headers_finished:
                request.parse_header(b"GET / HTTP/1.1\r\n")
            request.error = RequestTimeout(f"no bytes for {self.adj.channel_timeout} s in the "
                                           "middle of a request (--rest-idle-timeout)")
            request.completed = True
            self.requests.append(request)
            self.server.add_task(self)


class _Server(TcpWSGIServer):
    channel_class = _Channel

    def maintenance(self, now):
        cutoff = now - self.adj.channel_timeout
        for channel in list(self.active_channels.values()):
            if not channel.requests and channel.last_activity < cutoff:
                channel.time_out()


def _wsgi_app(api: RestApi):
    def app(environ, start_response):
        method, url = environ["REQUEST_METHOD"], environ["REQUEST_URI"]
        length = environ.get("CONTENT_LENGTH")
        if method == "POST" and length is None:
            status, answer = 411, {"error": f"{method} {url} needs a Content-Length header "
                                            "(or Transfer-Encoding: chunked)"}
        else:
            try:
                status, answer = api.handle(
                    method, url, lambda: environ["wsgi.input"].read(int(length or 0)))
            except Exception as exc:  # noqa: BLE001 - a bug must not take the server down
                LOG.exception("internal error in %s %s", method, url)
                status, answer = 500, {"error": f"internal error ({type(exc).__name__}); "
                                                "details in the server log"}
        data = json.dumps(answer).encode()
        start_response(f"{status} {http.HTTPStatus(status).phrase}",
                       _JSON + [("Content-Length", str(len(data)))])
        return [data]
    return app


class RestServer:
    """The API over HTTP on `host:port` (0: a free one, then `port` says which), bound at
    construction; `start` serves from a thread of its own, `stop` closes every connection."""

    def __init__(self, api: RestApi, host: str, port: int, *, threads: int,
                 max_request_bytes: int, idle_timeout: int, max_connections: int):
        adjustments = Adjustments(
            host=host, port=port, threads=threads, ident="mbt-serve",
            # waitress refuses a body of max_request_body_size bytes already
            max_request_body_size=max_request_bytes + 1,
            max_request_header_size=MAX_HEADER_BYTES, channel_timeout=idle_timeout,
            cleanup_interval=1,  # how often silent connections are looked for
            # the map it counts holds the listening socket and the wake-up pipe too
            connection_limit=max_connections + 2,
            asyncore_use_poll=True)  # select() stops at 1024 descriptors
        self._server = _Server(_wsgi_app(api), map={}, adj=adjustments)
        self._server.max_request_bytes = max_request_bytes
        self.port = int(self._server.effective_port)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rest", daemon=True)

    def start(self):
        self._thread.start()

    def _loop(self):
        server = self._server
        while not self._stopping.is_set():
            wasyncore.loop(timeout=server.adj.asyncore_loop_timeout, map=server._map,
                           use_poll=True, count=1)
        wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown()

    def stop(self):
        self._stopping.set()
        self._server.pull_trigger()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        else:
            self._server.close()
            self._server.task_dispatcher.shutdown()
