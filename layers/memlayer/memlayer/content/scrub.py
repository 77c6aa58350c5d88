"""Secret and PII scrubbing before text leaves for a third-party model.

`scrub(text)` replaces each finding with `[REDACTED:<kind>]` and counts findings per kind.
Rules run in order, most specific first (a private key block before the tokens inside it,
`sk-ant-` before `sk-`, credentials in URLs before e-mail addresses). Where a secret is
recognised by its context (`password=...`, `Authorization: Bearer ...`) only the value is
replaced and the context is kept. Number-like kinds are validated (Luhn for cards, mod-97 for
IBANs, digit counts for phones) so versions, dates, ULIDs and IDs in ordinary prose and code are
left alone. All patterns are linear-time on hostile input (bounded or boundary-anchored).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

REDACTED = "[REDACTED:{kind}]"


@dataclass(frozen=True, slots=True)
class ScrubResult:
    text: str
    found: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.found.values())


Validator = Callable[[str, re.Match[str]], bool]
"""`(secret, match) -> redact?`"""


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    valid: Validator | None = None
    # Named groups holding the secret; when one matched, only it is replaced.
    groups: tuple[str, ...] = ()


# --- validators ------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(
    r"""^(?:\$\{.*\}|\{\{.*\}\}|%\(.*\)s?|<[^<>]*>|\*+|x{3,}|\.{3,}|[\[{(]|\$\w+|%s|\?)$""",
    re.IGNORECASE,
)
_NOT_A_VALUE = frozenset(
    {"none", "null", "nil", "true", "false", "undefined", "str", "string", "bytes", "int", "bool",
     "optional", "secretstr", "required", "n/a", "na", "redacted", "hidden",
     "masked", "empty"}
)  # fmt: skip
_CODE_PREFIXES = (
    "os.", "self.", "this.", "process.env", "env.", "env[", "settings.", "config.", "cfg.",
    "request.", "args.", "opts.", "options.", "props.", "getenv", "secrets.", "vault.",
)  # fmt: skip
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _code_reference(value: str) -> bool:
    """`db_password`, `cfg.secret`: an identifier, not a literal (one char class, no nesting,
    so no catastrophic backtracking)."""
    return ("." in value or "_" in value) and _IDENTIFIER_PATH.fullmatch(value) is not None


_GENERIC_TYPE = re.compile(r"[A-Z][A-Za-z]*\[")


def _assigned_value(value: str, match: re.Match[str] | None = None) -> bool:
    """A value after `password=` / `token:` that looks like data rather than code."""
    stripped = value.strip()
    lowered = stripped.lower()
    return not (
        not stripped
        or _PLACEHOLDER.match(stripped)
        or lowered in _NOT_A_VALUE
        or lowered.startswith(_CODE_PREFIXES)
        or "(" in stripped
        or _GENERIC_TYPE.match(stripped)
    )


def _password(value: str, match: re.Match[str]) -> bool:
    if not _assigned_value(value):
        return False
    if match.group("secret3") is None:  # quoted: data, not code
        return True
    # Unquoted values in code are usually identifiers (`password=db_password`, `cfg.pw`), and
    # after a colon in prose usually words ("reset your password: click the link").
    if _code_reference(value):
        return False
    return "=" in match.group("sep") or not value.isalpha() or not value.islower()


def _generic_secret(value: str, match: re.Match[str]) -> bool:
    value = value.strip()
    return (
        _password(value, match)
        and len(value) >= 12
        and " " not in value
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
    )


def _has_digit(value: str, match: re.Match[str] | None = None) -> bool:
    return any(c.isdigit() for c in value)


def _mixed_random(value: str, match: re.Match[str] | None = None) -> bool:
    body = value.split("-", 2)[-1] if value.count("-") >= 2 else value
    return (
        any(c.isdigit() for c in body)
        and any(c.isupper() for c in body)
        and any(c.islower() for c in body)
    )


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        number = int(char)
        if index % 2:
            number = number * 2 - 9 if number > 4 else number * 2
        total += number
    return total % 10 == 0


def _card(candidate: str, match: re.Match[str] | None = None) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456" or len(set(digits)) == 1:
        return False
    separators = set(re.findall(r"[ -]", candidate))
    if len(separators) > 1:
        return False
    if separators:
        groups = re.split(r"[ -]", candidate)
        if not all(3 <= len(g) <= 6 for g in groups):
            return False
    return _luhn(digits)


# IBAN lengths per country (SWIFT registry). Unknown countries need 15-34 characters.
_IBAN_LENGTHS = {
    country: int(length)
    for country, length in re.findall(
        r"([A-Z]{2})(\d{2})",
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 "
        "DO28 EE20 EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 "
        "IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 "
        "MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 "
        "ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20",
    )
}


def _iban(candidate: str, match: re.Match[str] | None = None) -> bool:
    compact = candidate.replace(" ", "")
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _phone(candidate: str, match: re.Match[str] | None = None) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if not 8 <= digits <= 15:
        return False
    if candidate.count("(") != candidate.count(")") or candidate.count("(") > 1:
        return False
    return not re.search(r"[ .-]{2,}", candidate.replace("(", "").replace(")", ""))


_FILE_EXTENSIONS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "bmp", "tif", "tiff", "css",
     "js", "mjs", "cjs", "ts", "tsx", "jsx", "json", "map", "woff", "woff2", "ttf", "otf", "mp4",
     "webm", "mp3", "wav", "zip", "gz", "tgz", "lock", "yaml", "yml", "toml", "txt", "csv"}
)  # fmt: skip


def _email(candidate: str, match: re.Match[str] | None = None) -> bool:
    local, _, domain = candidate.rpartition("@")
    if local.lower() == "git":  # git@github.com:owner/repo.git is an SSH remote, not a person
        return False
    return domain.rsplit(".", 1)[-1].lower() not in _FILE_EXTENSIONS  # icon@2x.png


# --- rules -----------------------------------------------------------------------------------

_QUOTED_OR_BARE = r"""(?:"(?P<secret>[^"\n]{1,256})"|'(?P<secret2>[^'\n]{1,256})'|(?P<secret3>[^\s"',;&)}\]<>]{1,256}))"""  # noqa: E501
_ASSIGN = r"""["']?[ \t]*(?P<sep>=>|:=|=|:)[ \t]*"""
_VALUE_GROUPS = ("secret", "secret2", "secret3")

_RULES: tuple[_Rule, ...] = (
    _Rule(
        "private_key",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
            # PEM body: base64, headers (Proc-Type: 4,ENCRYPTED), literal \n in JSON; never
            # another BEGIN, so a run of BEGIN lines stays linear.
            r"(?:(?:[A-Za-z0-9+/=\s:,\\]|-(?!----BEGIN)){0,20000}?"
            r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
            r"|(?:\s*(?:(?:Proc-Type|DEK-Info|Comment|Version|Hash):[^\n]*|[A-Za-z0-9+/=]{16,}))*)"
        ),
    ),
    _Rule(
        "jwt",
        re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    ),
    _Rule(
        "url_credentials",
        re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s/@:]{1,128}:(?P<secret>[^\s/@]{1,256})@"),
        _assigned_value,
        ("secret",),
    ),
    _Rule("anthropic_key", re.compile(r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{20,}")),
    _Rule(
        "openai_key",
        re.compile(r"(?<![A-Za-z0-9_-])sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}"),
        _mixed_random,
    ),
    _Rule(
        "aws_access_key",
        re.compile(
            r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])"
        ),
    ),
    _Rule(
        "github_token",
        re.compile(
            r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})"
            r"(?![A-Za-z0-9_])"
        ),
    ),
    _Rule(
        "slack_token",
        re.compile(
            r"(?<![A-Za-z0-9-])(?:xox[abposre]-[A-Za-z0-9-]{10,250}"
            r"|xapp-\d-[A-Za-z0-9-]{20,250})"
            r"|https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]{16,}"
        ),
        _has_digit,
    ),
    _Rule(
        "stripe_key",
        re.compile(
            r"(?<![A-Za-z0-9_])(?:(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}|whsec_[A-Za-z0-9]{24,})"
            r"(?![A-Za-z0-9_])"
        ),
    ),
    _Rule(
        "google_api_key", re.compile(r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])")
    ),
    _Rule(
        "bearer_token",
        re.compile(r"(?i)(?<![A-Za-z0-9])bearer[ \t]+(?P<secret>[A-Za-z0-9._~+/-]{16,}=*)"),
        _has_digit,
        ("secret",),
    ),
    _Rule(
        "basic_auth",
        re.compile(
            r"""(?i)authorization["']?[ \t]*[:=][ \t]*["']?basic[ \t]+"""
            r"(?P<secret>[A-Za-z0-9+/]{6,}={0,2})"
        ),
        None,
        ("secret",),
    ),
    _Rule(
        "aws_secret_key",
        re.compile(
            r"""(?i)(?:aws[_-]?secret[_-]?(?:access[_-]?)?key|secret[_-]?access[_-]?key)"""
            r"""["']?[ \t]*(?:=>|:=|=|:)[ \t]*["']?"""
            r"(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        None,
        ("secret",),
    ),
    _Rule(
        "password",
        re.compile(
            # Any prefix for the long keys (DB_PASSWORD, PGPASSWORD); `pass`/`pwd` only as a
            # word or after a separator (db_pass), never inside `compass` or `bypass`.
            r"(?i)(?:password|passwd|passphrase|(?<![A-Za-z0-9])(?:pass|pwd))"
            + _ASSIGN
            + _QUOTED_OR_BARE
        ),
        _password,
        _VALUE_GROUPS,
    ),
    _Rule(
        "password",  # curl -u user:password
        re.compile(r"""(?<!\S)(?:-u|--user)[ \t]+["']?[^\s:'"]{1,64}:(?P<secret>[^\s'"]{1,256})"""),
        _assigned_value,
        ("secret",),
    ),
    _Rule(
        "secret",
        re.compile(
            r"(?i)(?:api[_-]?key|secret[_-]?key|client[_-]?secret|access[_-]?token"
            r"|auth[_-]?token|refresh[_-]?token|private[_-]?token|secret|token)"
            + _ASSIGN
            + _QUOTED_OR_BARE
        ),
        _generic_secret,
        _VALUE_GROUPS,
    ),
    _Rule(
        "email",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
            r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}"
            r"(?![A-Za-z0-9-])"
        ),
        _email,
    ),
    _Rule(
        "iban",
        re.compile(
            r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?"
            r"(?![A-Za-z0-9])"
        ),
        _iban,
    ),
    _Rule("card_number", re.compile(r"(?<![\d.-])(?:\d[ -]?){12,18}\d(?![\d-]|\.\d)"), _card),
    _Rule(
        "ssn",
        re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
    ),
    _Rule(
        "phone",  # international, E.164-ish: +44 20 7946 0958, +1 (415) 555-0132
        re.compile(r"(?<![\w+])\+[1-9][\d ().-]{6,22}\d(?![\w-]|\.\d)"),
        _phone,
    ),
    _Rule(
        "phone",  # North American: (415) 555-0132, 415-555-0132, 415.555.0132, 1-415-555-0132
        re.compile(
            r"(?<![\w.+-])(?:1[ .-]?)?(?:\([2-9]\d{2}\)[ ]?\d{3}[ .-]\d{4}"
            r"|[2-9]\d{2}(?P<sep>[ .-])\d{3}(?P=sep)\d{4})(?![\w-]|\.\d)"
        ),
    ),
)

KINDS: tuple[str, ...] = tuple(dict.fromkeys(rule.kind for rule in _RULES))

# Substrings (of the lower-cased text) without which a kind cannot match: most text skips
# most rules. Kinds not listed always run.
_HINTS: dict[str, tuple[str, ...]] = {
    "private_key": ("private key",),
    "jwt": ("eyj",),
    "url_credentials": ("://",),
    "anthropic_key": ("sk-ant-",),
    "openai_key": ("sk-",),
    "aws_access_key": ("akia", "asia", "abia", "acca", "a3t"),
    "github_token": ("gh", "github_pat_"),
    "slack_token": ("xox", "xapp-", "hooks.slack.com"),
    "stripe_key": ("_live_", "_test_", "whsec_"),
    "google_api_key": ("aiza",),
    "bearer_token": ("bearer",),
    "basic_auth": ("basic",),
    "aws_secret_key": ("key",),
    "password": ("pass", "pwd", "-u", "--user"),
    "secret": ("key", "secret", "token"),
    "email": ("@",),
}


def scrub(text: str) -> ScrubResult:
    """Replace secrets and personal data in `text` with `[REDACTED:<kind>]` markers."""
    if not text:
        return ScrubResult(text or "", {})
    found: dict[str, int] = {}
    lowered = text.lower()
    for rule in _RULES:
        hints = _HINTS.get(rule.kind)
        if hints and not any(hint in lowered for hint in hints):
            continue
        text = rule.pattern.sub(partial(_replace, rule=rule, found=found), text)
    return ScrubResult(text, found)


def _replace(match: re.Match[str], rule: _Rule, found: dict[str, int]) -> str:
    group = next((g for g in rule.groups if match.group(g) is not None), None)
    secret = match.group(group) if group else match.group(0)
    if "[REDACTED:" in secret or (rule.valid is not None and not rule.valid(secret, match)):
        return match.group(0)
    found[rule.kind] = found.get(rule.kind, 0) + 1
    marker = REDACTED.format(kind=rule.kind)
    if group is None:
        return marker
    whole, start, end = (
        match.group(0),
        match.start(group) - match.start(),
        match.end(group) - match.start(),
    )
    return whole[:start] + marker + whole[end:]
