"""Readable text and metadata from a fetched HTML page, and URL normalisation for dedupe.

Text comes from trafilatura (main content only: navigation, footers, ads and comments are
dropped). Metadata is read from the page head with an explicit precedence: OpenGraph first,
then Twitter cards, then `<title>` / `<meta name=description>`, then trafilatura's guesses.
Nothing here raises on bad input: garbage HTML gives empty text and `None` metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit, urlunsplit

from memlayer.observability import logger

if TYPE_CHECKING:
    from lxml.html import HtmlElement


MAX_TITLE_CHARS = 500
MAX_DESCRIPTION_CHARS = 2_000

# Query parameters that only track the click; dropped by `normalize_url`.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "mc_cid",
     "mc_eid", "_hsenc", "_hsmi", "mkt_tok"}
)  # fmt: skip
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MARKUP = re.compile(r"<\s*(?:!doctype|!--|\?xml|[a-z][a-z0-9-]*[\s/>])", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ExtractedPage:
    title: str | None
    description: str | None
    canonical_url: str  # declared canonical (link rel=canonical, then og:url), else `url`
    site_name: str | None
    text: str


def extract_page(html: str, url: str) -> ExtractedPage:
    """Main text and metadata of `html`, fetched from `url` (used to resolve relative links).

    Input without any markup (a text/plain, Markdown or JSON body) is returned as the text."""
    html = _CONTROL_CHARS.sub("", html or "")
    if not _MARKUP.search(html[:65_536]):
        return ExtractedPage(None, None, url, None, html.strip())
    tree = _parse(html)
    meta = _meta(tree) if tree is not None else {}
    base = _base_url(tree, url) if tree is not None else url
    text, fallback = _main_text(html, url)

    title = _first(
        meta.get("og:title"),
        meta.get("twitter:title"),
        _title_tag(tree),
        fallback.get("title"),
        limit=MAX_TITLE_CHARS,
    )
    description = _first(
        meta.get("og:description"),
        meta.get("description"),
        meta.get("twitter:description"),
        fallback.get("description"),
        limit=MAX_DESCRIPTION_CHARS,
    )
    guessed_site = fallback.get("sitename")
    if guessed_site and guessed_site.lower().removeprefix("www.") == _host(url):
        guessed_site = None  # trafilatura falls back to the host name; that is not a site name
    site_name = _first(
        meta.get("og:site_name"),
        meta.get("application-name"),
        guessed_site,
        limit=MAX_TITLE_CHARS,
    )
    canonical = None
    for candidate in (_canonical_link(tree), meta.get("og:url")):
        canonical = _absolute_http(base, candidate)
        if canonical:
            break
    return ExtractedPage(
        title=title,
        description=description,
        canonical_url=canonical or url,
        site_name=site_name,
        text=text,
    )


def normalize_url(url: str) -> str:
    """A stable form of `url` for dedupe: lower-case scheme and host, no credentials, no
    fragment, no tracking parameters (utm_*, fbclid, gclid, ...), no default port, no trailing
    slash. Other query parameters keep their order and encoding. Unparseable input is returned
    stripped, never raises."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    netloc = host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{host}:{port}"
    query = "&".join(
        pair for pair in parts.query.split("&") if pair and not _is_tracking(pair.split("=")[0])
    )
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, query, ""))


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").removeprefix("www.")
    except ValueError:
        return ""


def _is_tracking(name: str) -> bool:
    name = name.lower()
    return name.startswith("utm_") or name in TRACKING_PARAMS


# --- helpers ---------------------------------------------------------------------------------


def _parse(html: str) -> HtmlElement | None:
    if not html.strip():
        return None
    # lazy: lxml (~70 ms) loads with the first page; HTTP functions import this module only
    # for `normalize_url`
    import lxml.html
    from lxml.etree import ParserError, XMLSyntaxError

    for document in (html, html.encode("utf-8", "replace")):
        try:
            # Bytes cope with an XML declaration naming an encoding, which str input rejects.
            return lxml.html.fromstring(document)
        except (ParserError, XMLSyntaxError, ValueError):
            continue
    return None


def _main_text(html: str, url: str) -> tuple[str, dict[str, str | None]]:
    """Main-content text via trafilatura, plus its metadata guesses for fallbacks."""
    if not html.strip():
        return "", {}
    import trafilatura  # heavy (~0.2-0.3 s): imported on first use only

    try:
        document = trafilatura.bare_extraction(
            html,
            url=url,
            with_metadata=True,
            include_comments=False,
            include_tables=True,
            include_images=False,
            include_links=False,
        )
    except Exception:  # trafilatura on hostile markup: degrade to no text, never fail capture
        logger.warning("trafilatura failed", url=url, exc_info=True)
        return "", {}
    if document is None:
        return "", {}
    text = (getattr(document, "text", None) or "").strip()
    return text, {k: getattr(document, k, None) for k in ("title", "description", "sitename")}


def _meta(tree: HtmlElement) -> dict[str, str]:
    found: dict[str, str] = {}
    for element in tree.iter("meta"):
        key = (element.get("property") or element.get("name") or "").strip().lower()
        content = element.get("content")
        if key and content and key not in found:  # the first declaration wins
            found[key] = content
    return found


def _title_tag(tree: HtmlElement | None) -> str | None:
    if tree is None:
        return None
    element = next(tree.iter("title"), None)
    return element.text_content() if element is not None else None


def _canonical_link(tree: HtmlElement | None) -> str | None:
    if tree is None:
        return None
    for element in tree.iter("link"):
        rel = (element.get("rel") or "").lower().split()
        if "canonical" in rel and element.get("href"):
            return element.get("href")
    return None


def _base_url(tree: HtmlElement, url: str) -> str:
    element = next(tree.iter("base"), None)
    href = element.get("href") if element is not None else None
    return _absolute_http(url, href) or url


def _absolute_http(base: str, href: str | None) -> str | None:
    if not href or not href.strip():
        return None
    try:
        absolute = urljoin(base, href.strip())
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return absolute


def _first(*candidates: str | None, limit: int) -> str | None:
    for candidate in candidates:
        if isinstance(candidate, str):
            cleaned = " ".join(candidate.split())
            if cleaned:
                return cleaned[:limit]
    return None
