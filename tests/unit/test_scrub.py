"""Secret and PII scrubbing: every kind is found and masked; ordinary prose and code are not.

Fake credentials are assembled from pieces so that no literal in this file looks like a live
secret to scanners."""

from __future__ import annotations

import time

import pytest

from memlayer.content.scrub import KINDS, ScrubResult, scrub

R32 = "aB3dE5fG7hJ9kL1mN2pQ4rS6tU8vW0xY"  # random-looking, mixed case and digits
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM_BODY = "MIIEpAIBAAKCAQEA" + R32 + "\n" + R32 + R32 + "\n" + R32[:20] + "=="

# (text, kind, secret that must disappear, context that must survive)
FOUND = [
    (f"OPENAI_API_KEY=sk-{R32}T3BlbkFJ{R32[:8]}", "openai_key", f"sk-{R32}", "OPENAI_API_KEY="),
    (f"key: sk-proj-{R32}_{R32}-{R32[:10]}", "openai_key", f"sk-proj-{R32}", "key: "),
    (f"use sk-ant-api03-{R32}{R32}-{R32[:6]}AA here", "anthropic_key", "sk-ant-", "use  here"),
    ("id AKIAIOSFODNN7EXAMPLE, region us-east-1", "aws_access_key", "AKIAIOSFODNN7", "region"),
    ("creds ASIAY34FZKBOKMUTVV7A;", "aws_access_key", "ASIAY34FZKBOKMUTVV7A", "creds"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_key",
        "wJalrXUtnFEMI",
        "aws_secret_access_key = ",
    ),
    (
        '{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}',
        "aws_secret_key",
        "wJalrXUtnFEMI",
        '"SecretAccessKey": ',
    ),
    (f"token ghp_{R32}abcd ok", "github_token", "ghp_", " ok"),
    (f"gho_{R32}WXYZ", "github_token", "gho_", ""),
    (f"GH=github_pat_11ABCDEFG0{R32}_{R32}", "github_token", "github_pat_", "GH="),
    ("slack xoxb-" + "1234567890-1234567890123-" + R32[:24], "slack_token", "xoxb-", "slack "),
    (
        "hook https://hooks.slack.com/services/" + "T0000AAAA/B0000BBBB/" + R32[:24],
        "slack_token",
        "hooks.slack.com",
        "hook ",
    ),
    ("stripe " + "sk_" + "live_" + R32, "stripe_key", "_live_", "stripe "),
    ("rk_" + "test_" + R32, "stripe_key", "rk_", ""),
    ("maps AIza" + "SyA-" + R32[:31] + ".", "google_api_key", "AIza", "maps ."),
    (f"cookie={JWT}; path=/", "jwt", "eyJhbGci", "cookie=; path=/"),
    (
        f"key:\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\nbye",
        "private_key",
        "MIIEpAIBAAKCAQEA",
        "bye",
    ),
    (
        f"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA{R32}\n{R32}\n",
        "private_key",
        "b3BlbnNzaC1rZXkt",
        "",
    ),
    ("password=hunter2&user=bob", "password", "hunter2", "password=&user=bob"),
    ('{"password": "correct horse battery staple"}', "password", "horse", '"password": ""'),
    ("DB_PASSWORD='s3cr3t!'", "password", "s3cr3t", "DB_PASSWORD=''"),
    ("PGPASSWORD=Tr0ub4dor psql", "password", "Tr0ub4dor", "PGPASSWORD= psql"),
    ("Password: Summer2024!", "password", "Summer2024", "Password: "),
    ("curl -u admin:letmein123 https://x.test", "password", "letmein123", "curl -u admin:"),
    (
        "Authorization: Bearer abcDEF123456ghiJKL789",
        "bearer_token",
        "abcDEF123456",
        "Authorization: Bearer ",
    ),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "basic_auth", "dXNlcjpw", "Basic "),
    (
        "DATABASE_URL=postgres://app:S3cretPw@db.internal:5432/app",
        "url_credentials",
        "S3cretPw",
        "postgres://app:@db.internal:5432/app",
    ),
    ("api_key = 'abcd1234efgh5678'", "secret", "abcd1234efgh5678", "api_key = ''"),
    ("CLIENT_SECRET=9f8e7d6c5b4a3f2e1d0c", "secret", "9f8e7d6c5b4a", "CLIENT_SECRET="),
    ('"access_token": "ya29.a0AfH6SMBx3k2j"', "secret", "ya29.a0AfH6SMBx3k2j", '"access_token"'),
    ("write to jane.doe+news@example.co.uk today", "email", "jane.doe", "write to  today"),
    ("London office: +44 20 7946 0958.", "phone", "7946 0958", "London office: ."),
    ("Call +1 (415) 555-0132 after 5", "phone", "555-0132", "after 5"),
    ("cell 415-555-0132", "phone", "415-555-0132", "cell "),
    ("call (415) 555-0132", "phone", "(415) 555-0132", "call "),
    ("fax 415.555.0132", "phone", "415.555.0132", "fax "),
    ("Paris +33 1 42 68 53 00", "phone", "42 68 53 00", "Paris "),
    ("visa 4111 1111 1111 1111 exp 12/29", "card_number", "4111 1111", "exp 12/29"),
    ("mc 5500-0000-0000-0004", "card_number", "5500-0000", "mc "),
    ("amex 378282246310005", "card_number", "378282246310005", "amex "),
    ("amex 3782 822463 10005", "card_number", "822463", "amex "),
    ("IBAN DE89 3704 0044 0532 0130 00 (Bank)", "iban", "3704 0044", "IBAN  (Bank)"),
    ("GB82WEST12345698765432", "iban", "GB82WEST", ""),
    ("SSN 123-45-6789", "ssn", "123-45-6789", "SSN "),
]


@pytest.mark.parametrize(("text", "kind", "secret", "context"), FOUND)
def test_each_kind_is_found_and_masked(text: str, kind: str, secret: str, context: str) -> None:
    result = scrub(text)
    assert result.found == {kind: 1}
    assert secret not in result.text
    assert f"[REDACTED:{kind}]" in result.text
    assert context in result.text.replace(f"[REDACTED:{kind}]", "")  # the rest is kept


def test_every_kind_has_a_positive_case() -> None:
    assert {kind for _, kind, _, _ in FOUND} == set(KINDS)


def test_rule_order_prefers_the_specific_kind() -> None:
    # sk-ant- is Anthropic, not OpenAI; a JWT inside a bearer header is counted once, as jwt;
    # credentials in a URL are not also an e-mail address.
    assert scrub(f"sk-ant-api03-{R32}").found == {"anthropic_key": 1}
    assert scrub(f"Authorization: Bearer {JWT}").found == {"jwt": 1}
    assert scrub("https://bob:pa55word1@example.com/").found == {"url_credentials": 1}
    pem = f"-----BEGIN PRIVATE KEY-----\nAKIAIOSFODNN7EXAMPLE{R32}\n-----END PRIVATE KEY-----"
    assert scrub(pem).found == {"private_key": 1}


def test_counts_several_findings_and_is_idempotent() -> None:
    text = (
        "Contact ann@example.com or bob@example.org, or call +49 30 901820.\n"
        f"export GITHUB_TOKEN=ghp_{R32}abcd\n"
    )
    result = scrub(text)
    assert result.found == {"email": 2, "phone": 1, "github_token": 1}
    assert result.total == 4
    assert result.text.startswith("Contact [REDACTED:email] or [REDACTED:email], or call")
    again = scrub(result.text)
    assert again == ScrubResult(result.text, {})


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails Luhn
        "1234 5678 9012 3456",  # fails Luhn and no card starts with 1
        "0000 0000 0000 0000",
        "DE89 3704 0044 0532 0130 01",  # bad IBAN checksum
        "+49 30 12",  # too few digits for a phone
        "sk-learn-compatible-estimators-and-transformers",
        "Bearer of good news arrives tomorrow",
        "password: click the link we sent you",
        "xoxb-notatokenatall",
    ],
)
def test_lookalikes_that_fail_validation_are_kept(text: str) -> None:
    assert scrub(text) == ScrubResult(text, {})


PROSE_AND_CODE = [
    "Python 3.11.7 was released on 2023-12-04; upgrade to 3.13.0 by 2024-10-07T10:30:00+02:00.",
    "The meeting is at 10:30 on 12/05/2024, room 1204, budget $1,234,567.89 for FY2025.",
    "ULID 01ARZ3NDEKTSV4RRFFQ69G5FAV, UUID 123e4567-e89b-12d3-a456-426614174000, "
    "sha a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
    "Server at 192.168.1.100:8080 and 10.0.0.1; version v2.14.3-rc.1; build 20240115.3",
    "World population passed 8,100,000,000 in 2024; pi is 3.14159265358979.",
    "def login(user, password):\n    if not check_password(password, user.password_hash):\n"
    "        raise Unauthorized()\n",
    "password = os.environ['DB_PASSWORD']\nconn = connect(password=settings.db_password)\n",
    "class Settings:\n    password: str\n    api_key: SecretStr | None = None\n"
    "    token: Optional[str] = None\n",
    'const token = await getToken();\nheaders["Authorization"] = `Bearer ${token}`;',
    "Please reset your password: click the link. Forgot password? Use the form.",
    "The bearer of this letter, and bearer bonds in general, were popular.",
    "max_tokens=4096, temperature=0.2, top_p=0.95, seed=1234567890",
    '{"token_type": "bearer", "expires_in": 3600, "scope": "read write"}',
    "logo@2x.png and icon@3x.webp; npm install react@18.2.0; git@github.com:acme/repo.git",
    "Timestamp 1700000000000, snowflake 1453087643212345678, order #100234, ISBN 978-0-306-40615-7",
    "Math: 2+2=4, +5 points, +10%, delta +1.5, offset UTC+05:30, scores +100 -20.",
    "Dates: 2024-01-15, 15.01.2024, 2024/01/15, years 1999-2024, range 100-200-300.",
    "See RFC 7231 section 6.5.1, ISO 8601, and CVE-2021-44228 (Log4Shell).",
    "Coordinates 40.7128, -74.0060; temperature -3.5C; ratio 16:9; 4K@60Hz.",
    "token = self.tokenizer(text)\nsecret = get_secret()\nsecret_key = config.SECRET_KEY\n",
    "export PATH=/usr/local/bin:$PATH; echo $HOME; pass=$(cat file)",
    '<input type="password" name="password" placeholder="Password">',
    "The DEADBEEF12345678 constant and 0xCAFEBABE magic; GB22 alone is not an IBAN.",
    "Page 555-1234 (7 digits), extension x1234, zip 94107-1234.",
    "The compass: north. Bypass: none. Passport: valid.",
    "docker pull python@sha256:4b5c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c",
    "import torch\nmodel = AutoModel.from_pretrained('bert-base-uncased', revision='v1.0')\n",
]


@pytest.mark.parametrize("text", PROSE_AND_CODE)
def test_ordinary_prose_and_code_are_not_flagged(text: str) -> None:
    result = scrub(text)
    assert result.found == {}
    assert result.text == text


def test_empty_text() -> None:
    assert scrub("") == ScrubResult("", {})


def test_hostile_input_stays_linear() -> None:
    # Shapes that make naive patterns backtrack; about 300 KB in all.
    pathological = [
        "a" * 30_000,
        "1 " * 15_000,
        "12-" * 10_000,
        "a@" * 15_000,
        "a." * 15_000,
        ("abc.def@" + "x." * 20) * 700,
        "-----BEGIN PRIVATE KEY-----" * 1_000,
        "password=" * 3_000,
        ("x_" * 30 + "password=") * 400,
        "+1 " * 10_000,
        "eyJabcdefghij." * 2_000,
        "sk-" * 10_000,
        "DE12 " * 6_000,
        "http://a:" * 3_000,
    ]
    started = time.perf_counter()
    for text in pathological:
        scrub(text)
    assert time.perf_counter() - started < 5
