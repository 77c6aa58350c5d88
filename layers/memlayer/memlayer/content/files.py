"""The text of an uploaded file (txt, md, html, pdf), after checking it is what it was declared
as: its first bytes (magic numbers), its text decoding, its markup. A file that cannot become a
memory raises `ExtractionFailed` with a reason its owner can read."""

from __future__ import annotations

import asyncio
import inspect
import io
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from memlayer.content.extract import extract_page
from memlayer.settings import get_settings

ALLOWED_CONTENT_TYPES: frozenset[str] = frozenset(
    {"text/plain", "text/markdown", "text/html", "application/pdf"}
)


_CONTENT_TYPE_ALIASES = {
    "text/x-markdown": "text/markdown",
    "application/x-pdf": "application/pdf",
}


def normalize_content_type(value: str) -> str:
    base = value.split(";", 1)[0].strip().lower()
    return _CONTENT_TYPE_ALIASES.get(base, base)


class ExtractionFailed(Exception):
    """The file cannot become a memory; `reason` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Extracted:
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "PDF"),
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"PK\x03\x04", "ZIP archive (e.g. .docx, .xlsx)"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Office document"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x7fELF", "program"),
    (b"MZ", "Windows program"),
)


_TEXT_CONTROLS = frozenset("\t\n\r\f\v\x1b")


def sniff(data: bytes) -> str | None:
    """What a file is by its first bytes, for the kinds that are never text; None otherwise.
    A PDF may have up to 1 KiB of junk before `%PDF-` (as readers allow)."""
    if b"%PDF-" in data[:1024]:
        return "PDF"
    for magic, name in _SIGNATURES[1:]:
        if data.startswith(magic):
            return name
    if data[:12].startswith(b"RIFF") and data[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return "media file"
    return None


def decode_text(data: bytes) -> str:
    """Text of a file that claims to be text: UTF-8 (a BOM is dropped), UTF-16 with a BOM,
    else Windows-1252/Latin-1; refused when it holds NUL bytes or many control characters
    (it is binary)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise ExtractionFailed("the file is not valid UTF-16 text") from None
    elif b"\x00" in data:
        raise ExtractionFailed("the file is binary, not text")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
    controls = sum(
        1 for ch in text if ch not in _TEXT_CONTROLS and unicodedata.category(ch) == "Cc"
    )
    if controls > max(8, len(text) // 100):
        raise ExtractionFailed("the file is binary, not text")
    return text


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return re.sub(r"\n{4,}", "\n\n\n", text).strip()


def _pdf_text(data: bytes, budget: int) -> Extracted:
    # lazy: pypdf (~0.4 s) is needed only by the extract worker, never on an HTTP cold start
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = bool(reader.decrypt(""))  # NOT_DECRYPTED is 0
            except Exception:
                opened = False
            if not opened:
                raise ExtractionFailed("the PDF is password-protected")
        pages = reader.pages
        parts: list[str] = []
        collected = 0
        for page in pages:
            text = page.extract_text() or ""
            parts.append(text)
            collected += len(text.encode())
            if collected > budget:  # the memory keeps only so much; skip reading the rest
                break
        page_count = len(pages)
    except ExtractionFailed:
        raise
    except Exception as exc:  # pypdf raises many kinds on malformed files
        raise ExtractionFailed(f"the PDF could not be read ({type(exc).__name__})") from None
    text = _clean("\n\n".join(parts))
    if not text:
        raise ExtractionFailed(
            "the PDF has no extractable text (scanned pages are images; OCR is not supported)"
        )
    return Extracted(text=text, metadata={"pages": page_count})


def _text_file(data: bytes, content_type: str) -> str:
    kind = sniff(data)
    if kind is not None:
        raise ExtractionFailed(f"the file was declared {content_type} but is a {kind}")
    return decode_text(data)


_MARKUP = re.compile(r"<\s*(?:!doctype|html|head|body|[a-z][a-z0-9-]*[\s/>])", re.IGNORECASE)


async def _html(html: str) -> Extracted:
    if not _MARKUP.search(html[:65_536]):
        raise ExtractionFailed("the file was declared text/html but has no HTML markup")
    if inspect.iscoroutinefunction(extract_page):
        page = await extract_page(html, "")
    else:
        page = await asyncio.to_thread(extract_page, html, "")
    text = _clean(page.text)
    if not text:
        raise ExtractionFailed("the HTML page has no readable text")
    metadata = {
        name: value
        for name, value in (("title", page.title), ("description", page.description))
        if value
    }
    return Extracted(text=text, metadata=metadata)


async def extract(data: bytes, content_type: str) -> Extracted:
    """The text of an uploaded file, after checking it is what `content_type` claims.
    Raises ExtractionFailed with a reason the user can read."""
    content_type = normalize_content_type(content_type)
    if content_type == "application/pdf":
        kind = sniff(data)
        if kind != "PDF":
            what = f"a {kind}" if kind else "text or an unknown format"
            raise ExtractionFailed(f"the file was declared application/pdf but is {what}")
        budget = get_settings().max_content_bytes
        return await asyncio.to_thread(_pdf_text, data, budget)
    if content_type not in ALLOWED_CONTENT_TYPES:
        raise ExtractionFailed(f"{content_type} files are not supported")
    text = await asyncio.to_thread(_text_file, data, content_type)
    if content_type == "text/html":
        return await _html(text)
    text = _clean(text)
    if not text:
        raise ExtractionFailed("the file has no text")
    return Extracted(text=text)
