"""AWS calls from this process to its own moto server, without the loopback HTTP round trip.

Every boto3 client (the functions', the pumps', the tests') signs and serializes its request
as usual; instead of sending it over a socket to the moto server thread (a new connection
and a new server thread per request), the request is handed to the same moto WSGI
application in the calling thread, and its response goes back through botocore's normal
parsing. Same application, same headers (signatures included), same answers; a third of the
CPU of a small DynamoDB call is saved. Clients of other endpoints, and browsers using
presigned URLs, still talk HTTP to the moto server.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

_lock = threading.Lock()
_apps: dict[str, Any] = {}  # "http://127.0.0.1:port" -> moto's WSGI app serving it


def _send(request: Any, **_: Any) -> Any:
    url = request.url
    app = next((a for base, a in _apps.items() if url.startswith(base + "/")), None)
    if app is None:
        return None  # not ours: botocore sends it over HTTP
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    parts = urlsplit(url)
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    headers = {
        name: value.decode() if isinstance(value, bytes) else value
        for name, value in request.headers.items()
    }
    environ = EnvironBuilder(
        method=request.method,
        base_url=f"{parts.scheme}://{parts.netloc}",
        path=parts.path,
        query_string=parts.query,
        headers=headers,
        data=body or b"",
    ).get_environ()
    chunks, status, response_headers = run_wsgi_app(app, environ)
    try:
        content = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return AWSResponse(
        url, int(status.split()[0]), dict(response_headers), MockRawResponse(content)
    )


def install(endpoint: str, app: Any) -> None:
    """Route requests for `endpoint` to `app` in process, for clients created from now on."""
    import botocore.handlers

    with _lock:
        _apps[endpoint.rstrip("/")] = app
        if not any(entry[1] is _send for entry in botocore.handlers.BUILTIN_HANDLERS):
            botocore.handlers.BUILTIN_HANDLERS.append(("before-send", _send))


def uninstall(endpoint: str) -> None:
    with _lock:
        _apps.pop(endpoint.rstrip("/"), None)
