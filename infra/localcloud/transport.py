"""AWS calls from this process to its own moto server, without the loopback HTTP round trip.

Every boto3 client (the functions', the pumps', the tests') signs and serializes its request
as usual; instead of sending it over a socket to the moto server thread (a new connection
and a new server thread per request), the request is handed to the same moto WSGI
application in the calling thread, and its response goes back through botocore's normal
parsing. Same application, same headers (signatures included), same answers; a third of the
CPU of a small DynamoDB call is saved. Clients of other endpoints, and browsers using
presigned URLs, still talk HTTP to the moto server.

JSON-protocol calls (`X-Amz-Target`, posted to `/`: DynamoDB, SQS, Secrets Manager) skip
Flask too: the moto handler the Flask route would run is called as that route calls it
(`moto.core.utils.convert_to_flask_response`), with moto's own request type. Flask's request
and response objects, its CORS hook and werkzeug's test environ builder cost about a third
of such a call, and nothing of them reaches the SDK: the status, headers and body are moto's.

Those JSON-protocol requests are not SigV4-signed either, and their User-Agent is not rebuilt
per request (a seventh of a small call's client-side time): moto never checks a signature; it
reads the caller's access key from the `Authorization` header (its account), which they still
carry. Requests that go over HTTP, S3's and presigned URLs are signed as before.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import shutil
import sys
import tempfile
import threading
from typing import Any
from urllib.parse import urlsplit

_lock = threading.Lock()
_apps: dict[str, Any] = {}  # "http://127.0.0.1:port" -> moto's WSGI app serving it
# In a function's own process (container.py): the parent's moto endpoint -> its Relay.
_relays: dict[str, _RelayClient] = {}
# moto endpoints whose JSON-protocol requests go unsigned: this process's own (in `_apps`),
# and in a function process the parent's.
_unsigned: set[str] = set()


def _json_environ(parts: Any, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The WSGI environ of a POST to `/` (no path or query to encode)."""
    host, _, port = parts.netloc.partition(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": host,
        "SERVER_PORT": port or "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": parts.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "HTTP_HOST": parts.netloc,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = value
    return environ


def _dispatch_json(app: Any, environ: dict[str, Any]) -> tuple[int, dict[str, str], Any] | None:
    """The moto handler's (status, headers, body), or None when the backend's Flask app does
    not route this request to a handler (then the whole app answers it)."""
    from botocore.exceptions import ClientError
    from moto.core.request import Request
    from moto.core.utils import convert_to_flask_response
    from moto.moto_api import recorder
    from werkzeug.exceptions import HTTPException

    flask_app = app.get_application(environ)
    try:
        endpoint, _ = flask_app.url_map.bind_to_environ(environ).match()
    except HTTPException:
        return None
    view = flask_app.view_functions.get(endpoint)
    if not isinstance(view, convert_to_flask_response):
        return None
    request = Request(environ)
    recorder._record_request(request)
    try:
        result = view.callback(request, request.raw_url, dict(request.headers))
    except ClientError as exc:  # as convert_to_flask_response answers it
        result = 400, {}, exc.response["Error"]["Message"]
    if len(result) == 3:
        status, headers, content = result
    else:
        status, headers, content = 200, {}, result
    return int(status), {str(k): str(v) for k, v in headers.items()}, content


def _answer(
    app: Any, method: str, url: str, headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], Any]:
    """moto's (status, headers, body) for one request, from `app` in this thread."""
    parts = urlsplit(url)
    if method == "POST" and parts.path == "/" and not parts.query and "X-Amz-Target" in headers:
        direct = _dispatch_json(app, _json_environ(parts, headers, body))
        if direct is not None:
            return direct
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    environ = EnvironBuilder(
        method=method,
        base_url=f"{parts.scheme}://{parts.netloc}",
        path=parts.path,
        query_string=parts.query,
        headers=headers,
        data=body,
    ).get_environ()
    chunks, status, response_headers = run_wsgi_app(app, environ)
    try:
        content = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return int(status.split()[0]), dict(response_headers), content


def _parts(request: Any) -> tuple[str, str, dict[str, str], bytes]:
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    body = body or b""
    if isinstance(body, str):
        body = body.encode()
    headers = {
        name: value.decode() if isinstance(value, bytes) else value
        for name, value in request.headers.items()
    }
    return request.method, request.url, headers, body


def _send(request: Any, **_: Any) -> Any:
    url = request.url
    app = next((a for base, a in _apps.items() if url.startswith(base + "/")), None)
    relay = None
    if app is None:
        relay = next((r for base, r in _relays.items() if url.startswith(base + "/")), None)
        if relay is None:
            return None  # not ours: botocore sends it over HTTP
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    parts = _parts(request)
    if app is not None:
        status, headers, content = _answer(app, *parts)
    else:
        status, headers, content = relay.call(parts)
    return AWSResponse(url, status, headers, MockRawResponse(content))


class Relay:
    """This process's moto app served to the function processes (container.py) over a unix
    socket: each request is answered by `_answer` as an in-process one is, a pickled
    (method, url, headers, body) in, (status, headers, body) out. Loopback HTTP cost the
    parent as much again as the call (werkzeug's server parses and builds every request, and
    Flask routes it) and the child its HTTP client."""

    def __init__(self, app: Any) -> None:
        from multiprocessing.connection import Listener

        self._app = app
        self._directory = tempfile.mkdtemp(prefix="localcloud-relay-")
        self.address = os.path.join(self._directory, "moto.sock")
        self.authkey = os.urandom(16)
        self._listener = Listener(self.address, "AF_UNIX", authkey=self.authkey)
        threading.Thread(target=self._accept, name="localcloud-relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
            except (EOFError, multiprocessing.AuthenticationError):
                continue  # a client that failed the handshake
            except OSError:  # closed
                return
            threading.Thread(
                target=self._serve, args=(conn,), name="localcloud-relay-conn", daemon=True
            ).start()

    def _serve(self, conn: Any) -> None:
        with conn:
            while True:
                try:
                    method, url, headers, body = pickle.loads(conn.recv_bytes())  # noqa: S301
                except (EOFError, OSError):
                    return
                try:
                    answer = _answer(self._app, method, url, headers, body)
                except Exception as exc:  # as moto's server would answer it
                    answer = (500, {}, f"{type(exc).__name__}: {exc}")
                try:
                    conn.send_bytes(pickle.dumps(answer))
                except OSError:
                    return

    def close(self) -> None:
        self._listener.close()
        shutil.rmtree(self._directory, ignore_errors=True)


class _RelayClient:
    """A function process's end of a `Relay`: one connection per thread."""

    def __init__(self, address: str, authkey: bytes) -> None:
        self.address = address
        self.authkey = authkey
        self._local = threading.local()

    def call(self, parts: tuple[str, str, dict[str, str], bytes]) -> Any:
        from multiprocessing.connection import Client

        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = Client(self.address, "AF_UNIX", authkey=self.authkey)
        conn.send_bytes(pickle.dumps(parts))
        return pickle.loads(conn.recv_bytes())  # noqa: S301 - our parent's answer


def _unsigned_json(request: Any) -> bool:
    """A JSON-protocol request (`_dispatch_json`'s) for a moto endpoint in `_unsigned`."""
    if "X-Amz-Target" not in request.headers:
        return False
    url = request.url
    return any(url.startswith(base + "/") for base in _unsigned)


def _patch_signing() -> None:
    from botocore.signers import RequestSigner
    from botocore.useragent import UserAgentString

    if getattr(RequestSigner.sign, "_localcloud", False):
        return
    sign = RequestSigner.sign
    rebuild_user_agent = UserAgentString.rebuild_and_replace_user_agent_handler

    def local_sign(self: Any, operation_name: str, request: Any, *args: Any, **kwargs: Any) -> Any:
        signing_type = kwargs.get("signing_type", args[1] if len(args) > 1 else "standard")
        credentials = self._credentials
        if signing_type != "standard" or credentials is None or not _unsigned_json(request):
            return sign(self, operation_name, request, *args, **kwargs)
        # the shape moto parses (`Credential=<access key>/...`); nothing checks the rest
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/local/{self._region_name}/"
            f"{self._signing_name}/aws4_request, SignedHeaders=host, Signature=local"
        )
        return None

    def local_user_agent(self: Any, operation_name: str, request: Any, **kwargs: Any) -> None:
        if not _unsigned_json(request):
            rebuild_user_agent(self, operation_name, request, **kwargs)

    local_sign._localcloud = True  # type: ignore[attr-defined]
    RequestSigner.sign = local_sign  # type: ignore[method-assign]
    UserAgentString.rebuild_and_replace_user_agent_handler = local_user_agent  # type: ignore[method-assign]


def _hook_botocore() -> None:
    """(with _lock) `_send` answers before botocore sends, for clients created from now on."""
    import botocore.handlers

    if not any(entry[1] is _send for entry in botocore.handlers.BUILTIN_HANDLERS):
        botocore.handlers.BUILTIN_HANDLERS.append(("before-send", _send))
    _patch_signing()


def install(endpoint: str, app: Any) -> None:
    """Route requests for `endpoint` to `app` in process, for clients created from now on."""
    with _lock:
        _apps[endpoint.rstrip("/")] = app
        _unsigned.add(endpoint.rstrip("/"))
        _hook_botocore()


def install_relay(endpoint: str, address: str, authkey: bytes) -> None:
    """Requests for the moto server at `endpoint` (the parent's, in a function process) go
    through its `Relay`, JSON-protocol ones unsigned, for clients created from now on."""
    with _lock:
        _relays[endpoint.rstrip("/")] = _RelayClient(address, authkey)
        _unsigned.add(endpoint.rstrip("/"))
        _hook_botocore()


def uninstall(endpoint: str) -> None:
    with _lock:
        _apps.pop(endpoint.rstrip("/"), None)
        _relays.pop(endpoint.rstrip("/"), None)
        _unsigned.discard(endpoint.rstrip("/"))
