"""SSRF-safe page fetcher.

Every hop (the first request and each redirect) is checked before anything is sent: http(s)
only, no credentials in the URL, a valid port, and every address the host resolves to must be
a public unicast address. The connection is then pinned to a checked address (the URL's host is
swapped for the IP; `Host` and TLS SNI/certificate checks keep the real name), so a second DNS
answer cannot redirect it (DNS rebinding). The peer address of the socket is checked once more
before the body is read. Redirects are followed by hand and never go from https to http; the
body is streamed up to a byte cap that counts decompressed bytes as they are inflated (a small
gzip bomb cannot expand past it); the whole fetch runs under one deadline, and only text-like
content types are accepted.

`allow_hosts` ("host" or "host:port") is how tests and local development reach loopback
servers. An entry matches by name (the host as written in the URL) and by address (an IP entry
also admits any name that resolves to that IP, and the connected peer is checked against it).
An allowed name lifts the private/loopback check for what it resolves to, but never opens
link-local (cloud metadata), unspecified or multicast addresses: a rebinding DNS answer for an
allowed name cannot reach 169.254.169.254.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import ipaddress
import re
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from memlayer.errors import ProviderError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""`async (host, port) -> addresses` (IP strings, in connection order)."""

DEFAULT_CONTENT_TYPES: frozenset[str] = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "text/plain",
        "text/markdown",
        "text/x-markdown",
        "application/json",
    }
)
USER_AGENT = "Mozilla/5.0 (compatible; memlayer-fetch/1.0)"
_ACCEPT = (
    "text/html,application/xhtml+xml;q=0.9,text/plain;q=0.8,text/markdown;q=0.8,"
    "application/json;q=0.5"
)
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_URL_LENGTH = 8_192


class FetchError(ProviderError):
    """A fetch was refused or failed. `reason` is safe to show to the user."""


@dataclass(frozen=True, slots=True)
class FetchedPage:
    requested_url: str
    final_url: str
    status_code: int
    content_type: str  # media type only, lower-case, e.g. "text/html"
    text: str
    truncated: bool


# --- address policy ---------------------------------------------------------------------------

_V4_BLOCKED: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), label)
    for net, label in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("198.18.0.0/15", "benchmarking"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes broadcast 255.255.255.255
    )
)
_V6_BLOCKED: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), label)
    for net, label in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001::/23", "IETF protocol assignment"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "SRv6 SID"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be fetched from (e.g. "loopback"), or None if it is public unicast."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded, form = None, ""
        if ip.ipv4_mapped is not None:
            embedded, form = ip.ipv4_mapped, "IPv4-mapped"
        elif ip in _NAT64:
            embedded, form = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
        elif ip.sixtofour is not None:
            embedded, form = ip.sixtofour, "6to4"
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"{inner} ({form} {embedded})" if inner else None
        for net, label in _V6_BLOCKED:
            if ip in net:
                return label
        if ip not in _V6_GLOBAL_UNICAST:
            return "reserved"
    else:
        for v4net, label in _V4_BLOCKED:
            if ip in v4net:
                return label
    # Belt and braces: anything the stdlib does not consider globally routable.
    if ip.is_multicast:
        return "multicast"
    if not ip.is_global or ip.is_reserved or ip.is_private:
        return "non-global"
    return None


_INET_ATON_PART = re.compile(r"(?:0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*)", re.IGNORECASE)


def parse_ip_host(host: str) -> IPAddress | None:
    """Parse an IP literal, including the legacy inet_aton forms resolvers accept for IPv4
    (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`). None when `host` is a name."""
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        pass
    parts = candidate.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.fullmatch(p) for p in parts):
        return None
    values = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _parse_allow_hosts(entries: Sequence[str]) -> list[tuple[str, int | None]]:
    parsed: list[tuple[str, int | None]] = []
    for entry in entries:
        text = entry.strip().lower()
        port: str | None = None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"invalid allow_hosts entry {entry!r}")
                port = rest[1:]
        elif text.count(":") == 1:
            host, _, port = text.partition(":")
        else:
            host = text
        if not host or (port is not None and not port.isdigit()):
            raise ValueError(f"invalid allow_hosts entry {entry!r}")
        parsed.append((_canonical_host(host), int(port) if port is not None else None))
    return parsed


def _canonical_host(host: str) -> str:
    host = host.lower().rstrip(".")
    ip = parse_ip_host(host)
    return str(ip) if ip is not None else host


def _is_allowed(host: str, port: int, allow: list[tuple[str, int | None]]) -> bool:
    canonical = _canonical_host(host)
    return any(h == canonical and (p is None or p == port) for h, p in allow)


# What an allowed name may still never reach (see the module docstring).
_NEVER_BY_NAME = ("link-local", "unspecified", "multicast")


def _refusal(
    ip: IPAddress, port: int, *, name_allowed: bool, allow: list[tuple[str, int | None]]
) -> str | None:
    """Why connecting to `ip`:`port` is refused, or None when it may be reached."""
    reason = blocked_reason(ip)
    if reason is None or _is_allowed(str(ip), port, allow):
        return None
    if name_allowed and not reason.startswith(_NEVER_BY_NAME):
        return None
    return reason


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying context per process: building it (loading CA roots) costs ~20 ms."""
    return httpx.create_ssl_context()


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the OS resolver in the loop's executor (never blocks the event loop)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# --- fetching ---------------------------------------------------------------------------------


async def fetch_url(
    url: str,
    *,
    allow_hosts: Sequence[str] = (),
    timeout: float = 10.0,  # noqa: ASYNC109 - one deadline for the whole fetch, applied below
    max_bytes: int = 5_000_000,
    max_redirects: int = 5,
    allowed_content_types: Collection[str] = DEFAULT_CONTENT_TYPES,
    resolver: Resolver | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FetchedPage:
    """Fetch `url` safely; raise `FetchError` when it is refused or fails.

    `timeout` bounds the whole fetch (resolution, redirects and body). A body longer than
    `max_bytes` is cut there and the page is marked `truncated`. `resolver` and `transport`
    exist for tests."""
    allow = _parse_allow_hosts(allow_hosts)
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(
                url,
                allow=allow,
                io_timeout=timeout,
                max_bytes=max_bytes,
                max_redirects=max_redirects,
                allowed_types=frozenset(t.lower() for t in allowed_content_types),
                resolve=resolver or system_resolver,
                transport=transport,
            )
    except TimeoutError:
        raise FetchError(f"timed out after {timeout:g}s fetching {url}", retryable=True) from None


async def _fetch(
    url: str,
    *,
    allow: list[tuple[str, int | None]],
    io_timeout: float,
    max_bytes: int,
    max_redirects: int,
    allowed_types: frozenset[str],
    resolve: Resolver,
    transport: httpx.AsyncBaseTransport | None,
) -> FetchedPage:
    current = _parse_url(url)
    target = await _checked_target(current, allow=allow, resolve=resolve)
    async with httpx.AsyncClient(
        transport=transport,
        verify=_ssl_context(),
        trust_env=False,  # no environment proxies: the checked address must be the peer
        follow_redirects=False,
        timeout=httpx.Timeout(io_timeout),
        headers={"User-Agent": USER_AGENT, "Accept": _ACCEPT, "Accept-Encoding": "identity"},
    ) as client:
        for hop in range(max(0, max_redirects) + 1):
            response = await _connect(client, current, target)
            try:
                status = response.status_code
                if status in _REDIRECT_STATUSES:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(
                            f"HTTP {status} from {current} without Location", retryable=False
                        )
                    if hop == max_redirects:
                        raise FetchError(
                            f"too many redirects (more than {max_redirects}) from {url}",
                            retryable=False,
                        )
                    try:
                        following = _parse_url(str(current.join(location.strip())))
                    except httpx.InvalidURL:
                        raise FetchError(
                            f"invalid redirect target from {current}", retryable=False
                        ) from None
                    if current.scheme == "https" and following.scheme != "https":
                        raise FetchError(
                            f"refusing the redirect from {current} to {following}: "
                            "https must not downgrade to http",
                            retryable=False,
                        )
                    current = following
                    target = await _checked_target(current, allow=allow, resolve=resolve)
                    continue
                _check_status(status, current)
                content_type, charset = _content_type(response, allowed_types, current)
                body, truncated = await _read_capped(response, max_bytes)
            except httpx.TimeoutException:
                raise FetchError(f"timed out reading {current}", retryable=True) from None
            except httpx.DecodingError as exc:
                raise FetchError(
                    f"could not decode the body of {current}: {exc}", retryable=False
                ) from None
            except httpx.TransportError as exc:
                raise FetchError(
                    f"connection to {current.host} failed: {exc}", retryable=True
                ) from None
            finally:
                await response.aclose()
            return FetchedPage(
                requested_url=url,
                final_url=str(current),
                status_code=status,
                content_type=content_type,
                text=_decode(body, charset, content_type),
                truncated=truncated,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _parse_url(url: str) -> httpx.URL:
    if not isinstance(url, str) or not url.strip():
        raise FetchError("empty URL", retryable=False)
    if len(url) > _MAX_URL_LENGTH:
        raise FetchError("URL too long", retryable=False)
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise FetchError(f"invalid URL {url[:200]!r}", retryable=False) from None
    if parsed.scheme not in _DEFAULT_PORTS:
        raise FetchError(
            f"scheme {parsed.scheme or '(none)'!r} not allowed; only http and https",
            retryable=False,
        )
    if parsed.userinfo:
        raise FetchError("URLs with embedded credentials are not allowed", retryable=False)
    if not parsed.raw_host:
        raise FetchError(f"URL has no host: {url[:200]!r}", retryable=False)
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise FetchError(f"invalid port {parsed.port}", retryable=False)
    return parsed


async def _checked_addresses(
    host: str,
    port: int,
    *,
    name_allowed: bool,
    allow: list[tuple[str, int | None]],
    resolve: Resolver,
) -> list[IPAddress]:
    literal = parse_ip_host(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            resolved = await resolve(host, port)
        except socket.gaierror as exc:
            temporary = exc.errno == getattr(socket, "EAI_AGAIN", None)
            raise FetchError(f"could not resolve {host}: {exc}", retryable=temporary) from None
        except OSError as exc:
            raise FetchError(f"could not resolve {host}: {exc}", retryable=True) from None
        try:
            addresses = [ipaddress.ip_address(a) for a in resolved]
        except ValueError as exc:
            raise FetchError(
                f"resolver returned a bad address for {host}: {exc}", retryable=False
            ) from None
        if not addresses:
            raise FetchError(f"{host} has no addresses", retryable=False)
    for ip in addresses:  # refuse if ANY address is internal, not just the first
        reason = _refusal(ip, port, name_allowed=name_allowed, allow=allow)
        if reason:
            raise FetchError(f"refusing to fetch {host}: {ip} is {reason}", retryable=False)
    return addresses


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    name_allowed: bool
    allow: list[tuple[str, int | None]]
    addresses: list[IPAddress]


async def _checked_target(
    url: httpx.URL, *, allow: list[tuple[str, int | None]], resolve: Resolver
) -> _Target:
    host = url.raw_host.decode("ascii").lower()
    port = url.port or _DEFAULT_PORTS[url.scheme]
    name_allowed = _is_allowed(host, port, allow)
    addresses = await _checked_addresses(
        host, port, name_allowed=name_allowed, allow=allow, resolve=resolve
    )
    return _Target(host, port, name_allowed, allow, addresses)


async def _connect(client: httpx.AsyncClient, url: httpx.URL, target: _Target) -> httpx.Response:
    host = target.host
    extensions = {}
    if url.scheme == "https" and parse_ip_host(host) is None:
        extensions["sni_hostname"] = host.rstrip(".")  # SNI and certificate check use the name
    last_error: httpx.TransportError | None = None
    for ip in target.addresses:
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            continue  # scoped (link-local) addresses cannot go in a URL, nor be public anyway
        request = client.build_request(
            "GET",
            url.copy_with(host=str(ip)),  # pinned: connect to exactly the address checked
            headers={"Host": url.netloc.decode("ascii")},
            extensions=extensions,
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectError as exc:  # try the next address (e.g. IPv6 without a route)
            last_error = exc
            continue
        except httpx.TimeoutException:
            raise FetchError(f"timed out connecting to {host}", retryable=True) from None
        except httpx.TransportError as exc:
            raise FetchError(f"connection to {host} failed: {exc}", retryable=True) from None
        try:
            _check_peer(response, target)
        except BaseException:
            await response.aclose()
            raise
        return response
    certificate = last_error is not None and "CERTIFICATE_VERIFY_FAILED" in str(last_error)
    raise FetchError(f"could not connect to {host}: {last_error}", retryable=not certificate)


def _check_peer(response: httpx.Response, target: _Target) -> None:
    """Check the address the socket is actually connected to, before reading the body."""
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        return  # no socket information (custom transport); the connection was pinned anyway
    ip = ipaddress.ip_address(str(peer[0]))
    reason = _refusal(ip, target.port, name_allowed=target.name_allowed, allow=target.allow)
    if reason:
        raise FetchError(
            f"refusing to fetch {target.host}: connected to {ip}, {reason}", retryable=False
        )


def _check_status(status: int, url: httpx.URL) -> None:
    if 200 <= status < 300:
        return
    retryable = status == 429 or status >= 500
    raise FetchError(f"{url} returned HTTP {status}", retryable=retryable)


def _content_type(
    response: httpx.Response, allowed: frozenset[str], url: httpx.URL
) -> tuple[str, str | None]:
    raw = response.headers.get("content-type", "")
    media_type = raw.split(";", 1)[0].strip().lower()
    if media_type not in allowed:
        raise FetchError(
            f"unsupported content type {media_type or '(missing)'!r} at {url}", retryable=False
        )
    return media_type, response.charset_encoding


def _inflater(response: httpx.Response) -> Any:
    """A zlib decompressor for the body's Content-Encoding (None for identity). We ask for
    identity; a server that compresses anyway gets decoded here, under the byte cap."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise FetchError(
        f"unsupported content encoding {encoding!r} at {response.url}", retryable=False
    )


async def _read_capped(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    """At most `max_bytes` of the (decompressed) body, and whether there was more. Compressed
    chunks are inflated at most `room` bytes at a time, never whole."""
    inflater = _inflater(response)
    chunks: list[bytes] = []
    size = 0
    async for raw in response.aiter_raw():
        pending = raw
        while pending:
            room = max_bytes - size
            if inflater is None:
                chunk, pending = pending[: room + 1], b""
            else:
                try:
                    chunk = inflater.decompress(pending, room + 1)
                except zlib.error as exc:
                    raise FetchError(
                        f"could not decompress the body of {response.url}: {exc}",
                        retryable=False,
                    ) from None
                pending = inflater.unconsumed_tail
            if len(chunk) > room:
                chunks.append(chunk[:room])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
            if not chunk and pending:
                break  # defensive: no progress on this input
    return b"".join(chunks), False


_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip()).name
    except LookupError:
        return None
    # As browsers do: Latin-1 and ASCII labels mean windows-1252.
    return "cp1252" if name in ("iso8859-1", "ascii") else name


def _decode(body: bytes, charset: str | None, media_type: str) -> str:
    for bom, bom_encoding in _BOMS:
        if body.startswith(bom):
            return body.decode(bom_encoding, errors="replace")
    encoding = _codec(charset)
    if encoding is None and media_type in ("text/html", "application/xhtml+xml"):
        match = _META_CHARSET.search(body[:4096])
        encoding = _codec(match.group(1).decode("ascii")) if match else None
        if encoding and encoding.startswith("utf-16"):
            encoding = "utf-8"  # a meta tag read as ASCII cannot truly be UTF-16
    return body.decode(encoding or "utf-8", errors="replace")
