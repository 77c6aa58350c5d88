"""SSRF-safe fetcher: blocked addresses, redirects, caps and timeouts, against real loopback
HTTP servers (reachable only through `allow_hosts`). Nothing leaves the machine."""

from __future__ import annotations

import asyncio
import datetime
import functools
import gzip
import ipaddress
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from memlayer.content import fetch as fetch_module
from memlayer.content.fetch import (
    FetchedPage,
    FetchError,
    blocked_reason,
    fetch_url,
    parse_ip_host,
)
from memlayer.errors import ProviderError


@functools.cache
def gzip_bomb() -> bytes:
    return gzip.compress(b"x" * 50_000_000)  # 50 MB of "x": 50 KB on the wire


PAGE = "<html><head><title>Hello</title></head><body><p>Hello, world.</p></body></html>"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/page":
            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/latin1":
            self._send(200, "café crème".encode("latin-1"), "text/plain; charset=iso-8859-1")
        elif path == "/meta-charset":
            body = '<meta charset="windows-1252"><p>na\xefve</p>'.encode("cp1252")
            self._send(200, body, "text/html")
        elif path == "/host":
            self._send(200, self.headers["Host"].encode(), "text/plain")
        elif path == "/redirect":
            self._send(302, b"", "text/plain", Location=query["to"][0])
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            target = f"/chain/{left - 1}" if left > 0 else "/page"
            self._send(301, b"", "text/plain", Location=target)
        elif path == "/big":
            self._send(200, b"x" * int(query["n"][0]), "text/plain")
        elif path in ("/gzip", "/gzip-bomb"):
            body = gzip.compress(PAGE.encode()) if path == "/gzip" else gzip_bomb()
            self._send(200, body, "text/html", Content_Encoding="gzip")
        elif path == "/brotli":
            self._send(200, b"\x1b", "text/html", Content_Encoding="br")
        elif path == "/image":
            self._send(200, b"\x89PNG\r\n\x1a\n", "image/png")
        elif path == "/no-type":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"hi")
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), b"nope", "text/plain")
        elif path == "/slow":
            self.server.release.wait(5)
            self._send(200, b"late", "text/plain")
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "20")
            self.end_headers()
            for _ in range(20):  # each byte arrives well within a per-read timeout
                if self.server.release.wait(0.1):
                    return
                self.wfile.write(b".")
                self.wfile.flush()
        else:
            self._send(404, b"missing", "text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []
        self.release = threading.Event()


@dataclass
class Server:
    port: int
    hits: list[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def allow(self) -> list[str]:
        return [f"127.0.0.1:{self.port}"]


def _start() -> tuple[_Server, threading.Thread]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.daemon = True
    thread.start()
    return httpd, thread


def _stop(httpd: _Server, thread: threading.Thread) -> None:
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[Server]:
    httpd, thread = _start()
    try:
        yield Server(httpd.server_address[1], httpd.hits)
    finally:
        _stop(httpd, thread)


@pytest.fixture
def other_server() -> Iterator[Server]:
    httpd, thread = _start()
    try:
        yield Server(httpd.server_address[1], httpd.hits)
    finally:
        _stop(httpd, thread)


def fetch(url: str, **kwargs: object) -> FetchedPage:
    return asyncio.run(fetch_url(url, **kwargs))  # type: ignore[arg-type]


def refused(url: str, **kwargs: object) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch(url, **kwargs)
    return info.value


async def _no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"resolver must not be called for {host}")


def _static_resolver(table: dict[str, list[str]], calls: list[tuple[str, int]] | None = None):
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append((host, port))
        return table[host]

    return resolve


# --- blocked addresses -------------------------------------------------------------------------

BLOCKED = [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.8.9.10:8080/x", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.0.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://239.255.255.250/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0.1.2.3/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://100.127.255.254/", "carrier-grade NAT"),
    ("http://[fc00::1]/", "unique-local"),
    ("http://[fd12:3456:789a::1]/", "unique-local"),
    ("http://[fec0::1]/", "site-local"),
    ("http://[2001:db8::1]/", "documentation"),
    ("http://192.0.2.10/", "documentation"),
    ("http://198.18.0.1/", "benchmarking"),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
    ("http://[::ffff:127.0.0.1]/", "loopback (IPv4-mapped 127.0.0.1)"),
    ("http://[::ffff:7f00:1]/", "loopback (IPv4-mapped"),
    ("http://[::ffff:169.254.169.254]/", "link-local (IPv4-mapped"),
    ("http://[::ffff:10.0.0.1]/", "private (IPv4-mapped"),
    ("http://[::127.0.0.1]/", "IPv4-compatible"),
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local (NAT64 169.254.169.254)"),
    ("http://[64:ff9b:1::1]/", "local-use NAT64"),
    ("http://[2002:c0a8:0101::1]/", "private (6to4 192.168.1.1)"),
    ("http://[2002:7f00:1::]/", "loopback (6to4"),
    # Numeric IPv4 forms that resolvers (inet_aton) accept.
    ("http://2130706433/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0x7F.0x0.0x0.0x1/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://0xa9fea9fe/", "link-local"),
    ("http://2852039166/latest/meta-data/", "link-local"),
    ("http://10.1/", "private"),
]


@pytest.mark.parametrize(("url", "label"), BLOCKED)
def test_blocked_addresses_are_refused(url: str, label: str) -> None:
    error = refused(url, resolver=_no_dns)
    assert isinstance(error, ProviderError)
    assert error.retryable is False
    assert "refusing" in error.reason
    assert label in error.reason


def test_octal_dotted_ipv4_is_refused_too() -> None:
    # httpx rejects the URL outright; either way it is refused, permanently.
    error = refused("http://0177.0.0.1/", resolver=_no_dns)
    assert error.retryable is False


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8",
     "64:ff9b::808:808", "2002:808:808::1"],
)  # fmt: skip
def test_public_addresses_pass_the_policy(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.0.258", "10.0.1.2"),
        ("[::1]", "::1"),
        ("example.com", None),
        ("256.1.1.1", None),
        ("08.1.1.1", None),
        ("1.2.3.4.5", None),
        ("4294967296", None),
    ],
)
def test_parse_ip_host_understands_inet_aton_forms(host: str, expected: str | None) -> None:
    parsed = parse_ip_host(host)
    assert (str(parsed) if parsed else None) == expected


def test_localhost_name_is_refused(server: Server) -> None:
    error = refused(f"http://localhost:{server.port}/page")
    assert error.retryable is False
    assert "loopback" in error.reason
    assert server.hits == []


def test_name_resolving_to_private_address_is_refused() -> None:
    error = refused(
        "https://intranet.example/", resolver=_static_resolver({"intranet.example": ["10.0.0.7"]})
    )
    assert "10.0.0.7 is private" in error.reason
    assert error.retryable is False


def test_any_blocked_address_among_several_refuses() -> None:
    resolver = _static_resolver({"mixed.example": ["93.184.216.34", "192.168.1.1"]})
    error = refused("http://mixed.example/", resolver=resolver)
    assert "192.168.1.1 is private" in error.reason


# --- URL validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/file.txt",
        "gopher://example.com:70/_GET",
        "javascript:alert(1)",
        "data:text/html,<h1>x</h1>",
        "dict://127.0.0.1:11211/stat",
        "//example.com/no-scheme",
        "",
    ],
)
def test_non_http_schemes_are_refused(url: str) -> None:
    error = refused(url, resolver=_no_dns)
    assert error.retryable is False


def test_credentials_in_url_are_refused_even_for_allowed_hosts(server: Server) -> None:
    error = refused(f"http://user:secret@127.0.0.1:{server.port}/page", allow_hosts=server.allow)
    assert "credentials" in error.reason
    assert server.hits == []


def test_bad_allow_hosts_entry_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="allow_hosts"):
        fetch("http://example.com/", allow_hosts=["example.com:http"])


# --- successful fetches --------------------------------------------------------------------------


def test_fetches_page_from_allowed_loopback_server(server: Server) -> None:
    page = fetch(f"{server.base}/page", allow_hosts=server.allow)
    assert page == FetchedPage(
        requested_url=f"{server.base}/page",
        final_url=f"{server.base}/page",
        status_code=200,
        content_type="text/html",
        text=PAGE,
        truncated=False,
    )


def test_allow_hosts_matches_port_and_case(server: Server) -> None:
    # Without a port the entry allows every port; with the wrong port it allows nothing.
    assert fetch(f"{server.base}/page", allow_hosts=["127.0.0.1"]).status_code == 200
    error = refused(f"{server.base}/page", allow_hosts=[f"127.0.0.1:{server.port + 1}"])
    assert "loopback" in error.reason
    page = fetch(f"http://LocalHost:{server.port}/host", allow_hosts=[f"LOCALHOST:{server.port}"])
    assert page.text == f"localhost:{server.port}"


def test_decodes_with_the_response_charset(server: Server) -> None:
    assert fetch(f"{server.base}/latin1", allow_hosts=server.allow).text == "café crème"
    page = fetch(f"{server.base}/meta-charset", allow_hosts=server.allow)
    assert "naïve" in page.text


def test_connection_is_pinned_to_the_checked_address(server: Server) -> None:
    # The name only exists in our resolver: the request can only succeed if the client
    # connects to the address we resolved (and checked) rather than looking the name up again.
    calls: list[tuple[str, int]] = []
    resolver = _static_resolver({"pinned.example": ["127.0.0.1"]}, calls)
    url = f"http://pinned.example:{server.port}/host"
    page = fetch(url, allow_hosts=[f"pinned.example:{server.port}"], resolver=resolver)
    assert page.text == f"pinned.example:{server.port}"  # the Host header keeps the name
    assert page.final_url == url
    assert calls == [("pinned.example", server.port)]


def test_falls_back_to_the_next_address_when_one_cannot_connect(server: Server) -> None:
    # The server listens on 127.0.0.1 only, so ::1 is refused (or unavailable).
    resolver = _static_resolver({"dual.example": ["::1", "127.0.0.1"]})
    page = fetch(
        f"http://dual.example:{server.port}/page",
        allow_hosts=["dual.example"],
        resolver=resolver,
    )
    assert page.text == PAGE


class _RebindingTransport(httpx.AsyncBaseTransport):
    """Whatever address the fetcher pinned, the socket lands on the loopback server: what a
    rebinding (or a hostile network path) would do between the check and the connect."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1", port=self._port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def test_connected_address_is_checked_before_reading(server: Server) -> None:
    resolver = _static_resolver({"rebind.example": ["93.184.216.34"]})
    error = refused(
        "http://rebind.example/page",
        resolver=resolver,
        transport=_RebindingTransport(server.port),
    )
    assert "connected to 127.0.0.1, loopback" in error.reason
    assert error.retryable is False


# --- redirects -----------------------------------------------------------------------------------


def test_follows_redirects_and_reports_final_url(server: Server) -> None:
    # /chain/2 -> /chain/1 -> /chain/0 -> /page: exactly max_redirects hops is fine.
    page = fetch(f"{server.base}/chain/2", allow_hosts=server.allow, max_redirects=3)
    assert page.final_url == f"{server.base}/page"
    assert page.requested_url == f"{server.base}/chain/2"
    assert server.hits == ["/chain/2", "/chain/1", "/chain/0", "/page"]


def test_too_many_redirects(server: Server) -> None:
    error = refused(f"{server.base}/chain/10", allow_hosts=server.allow, max_redirects=3)
    assert "too many redirects" in error.reason
    assert error.retryable is False
    assert len(server.hits) == 4  # the first request plus three redirects, then stop


def test_redirect_to_metadata_address_is_refused(server: Server) -> None:
    target = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    error = refused(f"{server.base}/redirect?to={target}", allow_hosts=server.allow)
    assert "169.254.169.254 is link-local" in error.reason
    assert error.retryable is False


def test_redirect_to_loopback_port_not_allowed_is_refused(
    server: Server, other_server: Server
) -> None:
    target = f"http://localhost:{other_server.port}/page"
    error = refused(f"{server.base}/redirect?to={target}", allow_hosts=server.allow)
    assert "loopback" in error.reason
    assert other_server.hits == []


def test_redirect_to_other_scheme_is_refused(server: Server) -> None:
    error = refused(f"{server.base}/redirect?to=file:///etc/passwd", allow_hosts=server.allow)
    assert "scheme 'file' not allowed" in error.reason


def test_redirect_between_allowed_servers_works(server: Server, other_server: Server) -> None:
    target = f"{other_server.base}/page"
    page = fetch(
        f"{server.base}/redirect?to={target}", allow_hosts=server.allow + other_server.allow
    )
    assert page.final_url == target
    assert other_server.hits == ["/page"]


# --- caps and failures ---------------------------------------------------------------------------


def test_oversize_body_is_truncated(server: Server) -> None:
    page = fetch(f"{server.base}/big?n=200000", allow_hosts=server.allow, max_bytes=1000)
    assert page.truncated is True
    assert page.text == "x" * 1000


def test_body_exactly_at_the_cap_is_not_truncated(server: Server) -> None:
    page = fetch(f"{server.base}/big?n=1000", allow_hosts=server.allow, max_bytes=1000)
    assert (page.truncated, len(page.text)) == (False, 1000)


@pytest.mark.parametrize(("path", "shown"), [("/image", "'image/png'"), ("/no-type", "missing")])
def test_disallowed_content_type_is_refused(server: Server, path: str, shown: str) -> None:
    error = refused(f"{server.base}{path}", allow_hosts=server.allow)
    assert "unsupported content type" in error.reason
    assert shown in error.reason
    assert error.retryable is False


@pytest.mark.parametrize(
    ("status", "retryable"), [(404, False), (403, False), (410, False), (429, True), (503, True)]
)
def test_http_errors_say_whether_to_retry(server: Server, status: int, retryable: bool) -> None:
    error = refused(f"{server.base}/status/{status}", allow_hosts=server.allow)
    assert f"HTTP {status}" in error.reason
    assert error.retryable is retryable


def test_slow_server_times_out(server: Server) -> None:
    started = time.monotonic()
    error = refused(f"{server.base}/slow", allow_hosts=server.allow, timeout=0.5)
    assert time.monotonic() - started < 2
    assert error.retryable is True
    assert "timed out" in error.reason


def test_timeout_bounds_the_whole_fetch_not_each_read(server: Server) -> None:
    # Bytes trickle in every 0.1 s, so no single read times out; the overall deadline does.
    started = time.monotonic()
    error = refused(f"{server.base}/drip", allow_hosts=server.allow, timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert error.retryable is True


def test_connection_refused_is_retryable(server: Server) -> None:
    httpd = _Server()  # bind a port, then close it so nothing listens there
    port = httpd.server_address[1]
    httpd.server_close()
    error = refused(f"http://127.0.0.1:{port}/", allow_hosts=[f"127.0.0.1:{port}"])
    assert error.retryable is True
    assert "could not connect" in error.reason


# --- TLS with a pinned address ---------------------------------------------------------------


def _tls_contexts(hostname: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A throwaway CA and a leaf certificate for `hostname`: (server context, client context)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key, issuer_name, issuer_key, *, ca: bool, san: str | None = None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        # The key identifiers are required by Python 3.13's strict X.509 verification.
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        if ca:
            usage = dict.fromkeys(
                ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
                 "encipher_only", "decipher_only"),
                False,
            )  # fmt: skip
            builder = builder.add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage),
                critical=True,
            )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "memlayer test CA")])
    ca_cert = build("memlayer test CA", ca_key, ca_name, ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = build(hostname, leaf_key, ca_name, ca_key, ca=False, san=hostname)

    pem = serialization.Encoding.PEM
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_path.write_bytes(leaf.public_bytes(pem))
        key_path.write_bytes(
            leaf_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cadata=ca_cert.public_bytes(pem).decode())
    return server, client


@pytest.fixture
def tls_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    server_context, client_context = _tls_contexts("secure.example")
    monkeypatch.setattr(fetch_module, "_ssl_context", lambda: client_context)
    httpd = _Server()
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.daemon = True
    thread.start()
    try:
        yield Server(httpd.server_address[1], httpd.hits)
    finally:
        _stop(httpd, thread)


def test_https_pinned_connection_verifies_the_certificate_for_the_name(
    tls_server: Server,
) -> None:
    # Connected to 127.0.0.1, yet SNI and the certificate check use the host name.
    port = tls_server.port
    resolver = _static_resolver({"secure.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    page = fetch(
        f"https://secure.example:{port}/host",
        allow_hosts=["secure.example", "other.example"],
        resolver=resolver,
    )
    assert page.text == f"secure.example:{port}"
    error = refused(
        f"https://other.example:{port}/host",
        allow_hosts=["secure.example", "other.example"],
        resolver=resolver,
    )
    assert "could not connect" in error.reason
    assert "CERTIFICATE_VERIFY_FAILED" in error.reason
    assert error.retryable is False  # a certificate mismatch will not fix itself
    assert tls_server.hits == ["/host"]


# --- decompression, downgrades, allow-list by address -------------------------------------------


def test_a_compressed_body_is_decoded(server: Server) -> None:
    page = fetch(f"{server.base}/gzip", allow_hosts=server.allow)
    assert page.text == PAGE and not page.truncated


def test_decompressed_bytes_are_capped_as_they_stream(server: Server) -> None:
    import tracemalloc

    gzip_bomb()  # made before measuring: the server's side is not the fetcher's
    tracemalloc.start()
    try:
        page = fetch(f"{server.base}/gzip-bomb", allow_hosts=server.allow, max_bytes=100_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert page.truncated and page.text == "x" * 100_000
    assert peak < 10_000_000  # inflating the whole 50 MB chunk first would need 50 MB at once


def test_an_unknown_content_encoding_is_refused(server: Server) -> None:
    error = refused(f"{server.base}/brotli", allow_hosts=server.allow)
    assert "content encoding" in error.reason and error.retryable is False


def test_https_never_redirects_down_to_http(tls_server: Server, server: Server) -> None:
    resolver = _static_resolver({"secure.example": ["127.0.0.1"]})
    downgrade = f"http://127.0.0.1:{server.port}/page"
    error = refused(
        f"https://secure.example:{tls_server.port}/redirect?to={downgrade}",
        allow_hosts=["secure.example", *server.allow],
        resolver=resolver,
    )
    assert "downgrade" in error.reason and error.retryable is False
    assert server.hits == []  # the http server was never asked


def test_an_allowed_address_admits_a_name_that_resolves_to_it(server: Server) -> None:
    resolver = _static_resolver({"wiki.internal": ["127.0.0.1"]})
    page = fetch(
        f"http://wiki.internal:{server.port}/page", allow_hosts=server.allow, resolver=resolver
    )
    assert "Hello, world." in page.text
    # ...on the allowed port only
    error = refused(
        f"http://wiki.internal:{server.port + 1}/page", allow_hosts=server.allow, resolver=resolver
    )
    assert "loopback" in error.reason


@pytest.mark.parametrize("address", ["169.254.169.254", "0.0.0.0", "::ffff:169.254.169.254"])
def test_an_allowed_name_never_reaches_metadata_addresses(address: str) -> None:
    """DNS rebinding against an allow-listed name: its answer is still checked."""
    resolver = _static_resolver({"rebind.example": [address]})
    error = refused("http://rebind.example/", allow_hosts=["rebind.example"], resolver=resolver)
    assert "refusing to fetch rebind.example" in error.reason
