"""Tag normalisation and reuse of the user's existing tags.

`normalize_tag` gives the canonical spelling (lowercase, hyphen-separated, no stray punctuation).
`reconcile_tags` maps proposed tags onto tags the user already has when they are the same tag
spelt differently ("JavaScript", "java-script", "java_script" → "javascript"; "APIs" → "api"),
so analysis does not grow near-duplicate tags.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from memlayer.text import singular, singular_forms

MAX_TAG_LENGTH = 64

_SEPARATORS = re.compile(r"[\s_/\\|,;:]+")
# Keep letters, digits, hyphens and the characters that carry meaning in tech names
# ("c++", "c#", "node.js"); everything else is dropped.
_DISALLOWED = re.compile(r"[^\w\-+#.]", re.UNICODE)
_HYPHENS = re.compile(r"-{2,}")
_LOOSE_DOTS = re.compile(r"\.(?![a-z0-9])")
_KEY_DROP = re.compile(r"[-.]")
_DIGIT = re.compile(r"\d")


def normalize_tag(tag: str, *, max_length: int = MAX_TAG_LENGTH) -> str:
    """Canonical tag spelling: NFKC, lowercase, trimmed, spaces/underscores → hyphens, punctuation
    stripped (keeping +, # and interior dots), repeated hyphens collapsed. May return ""."""
    text = unicodedata.normalize("NFKC", str(tag)).strip().lower()
    text = _SEPARATORS.sub("-", text)
    text = _DISALLOWED.sub("", text).replace("_", "-")
    text = _LOOSE_DOTS.sub("", text)
    text = _HYPHENS.sub("-", text).strip("-")
    if len(text) > max_length:
        text = text[:max_length].rstrip("-.")
    return text


def _keys(tag: str) -> tuple[str, ...]:
    """Spelling-insensitive identities of a tag: normalised, separators and dots gone, the last
    word made singular (a few candidates when the plural is ambiguous)."""
    parts = [part for part in normalize_tag(tag).replace(".", "").split("-") if part]
    if not parts:
        return ()
    head = "".join(parts[:-1])
    return tuple(dict.fromkeys(head + form for form in singular_forms(parts[-1])))


def span_key(tokens: list[str]) -> str:
    """`tag_key` of already-lowercased word tokens joined as one tag, without re-normalising
    (fast path for scanning text for mentions of existing tags)."""
    parts = [p for token in tokens for p in token.replace(".", "").split("-") if p]
    if not parts:
        return ""
    return "".join(parts[:-1]) + singular(parts[-1])


def tag_key(tag: str) -> str:
    """The primary spelling-insensitive identity of a tag ("" for an empty tag)."""
    keys = _keys(tag)
    return keys[0] if keys else ""


def _edit_distance_at_most(a: str, b: str, limit: int) -> bool:
    """True when the Levenshtein distance between a and b is at most `limit`."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit


def _typo_limit(key: str) -> int:
    if len(key) >= 10:
        return 2
    if len(key) >= 6:
        return 1
    return 0


def _is_near(a: str, b: str) -> bool:
    """Typo-level closeness for longer tags. Never across digits ("python2" ≠ "python3") and the
    first letter must agree ("testing" ≠ "resting")."""
    limit = min(_typo_limit(a), _typo_limit(b))
    if limit == 0 or a[0] != b[0] or _DIGIT.search(a) or _DIGIT.search(b):
        return False
    return _edit_distance_at_most(a, b, limit)


@lru_cache(maxsize=16384)
def _indexed(tag: str) -> tuple[str, tuple[str, ...]]:
    """An existing tag's normal spelling and keys. Every memory analyzed indexes the user's
    whole vocabulary again, so these are remembered (300 tags took 2 ms a memory)."""
    norm = normalize_tag(tag)
    return norm, _keys(norm)


class TagIndex:
    """The user's existing tags, indexed for matching proposals against them."""

    def __init__(self, existing: Iterable[str]) -> None:
        self._by_key: dict[str, str] = {}
        for tag in existing:
            norm, keys = _indexed(tag)
            for key in keys:
                self._by_key.setdefault(key, norm)

    def __len__(self) -> int:
        return len(set(self._by_key.values()))

    def lookup(self, key: str) -> str | None:
        """The existing tag whose key is exactly `key` (see `span_key`)."""
        return self._by_key.get(key)

    def match(self, tag: str) -> str | None:
        """The existing tag that `tag` is a spelling of, or None."""
        keys = _keys(tag)
        for key in keys:
            exact = self._by_key.get(key)
            if exact is not None:
                return exact
        if not keys or _typo_limit(keys[0]) == 0:
            return None
        key = keys[0]
        best: tuple[int, str] | None = None
        for other_key, existing in self._by_key.items():
            if _is_near(key, other_key):
                # Prefer the closest length, then the alphabetically first, for determinism.
                rank = (abs(len(other_key) - len(key)), existing)
                if best is None or rank < best:
                    best = rank
        return best[1] if best else None


def reconcile_tags(
    proposed: Iterable[str], existing: Iterable[str] | TagIndex = (), *, limit: int | None = 10
) -> list[str]:
    """Normalise proposed tags and replace each with the user's existing tag when it is the same
    tag spelt differently. Order is kept, duplicates (after mapping) dropped, empties skipped."""
    index = existing if isinstance(existing, TagIndex) else TagIndex(existing)
    out: list[str] = []
    seen: set[str] = set()
    for tag in proposed:
        norm = normalize_tag(tag)
        if not norm:
            continue
        chosen = index.match(norm) or norm
        key = tag_key(chosen)
        if key in seen:
            continue
        seen.add(key)
        out.append(chosen)
        if limit is not None and len(out) >= limit:
            break
    return out
