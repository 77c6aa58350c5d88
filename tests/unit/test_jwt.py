"""JwtVerifier against real signed tokens; asymmetric keys come from a loopback JWKS server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from memlayer.auth.jwt import JwtVerifier, VerifiedToken, mint_dev_token
from memlayer.errors import Unauthorized

SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
OTHER_SECRET = "another-secret-jwt-token-with-at-least-32-characters"
AUD = "authenticated"
ISS = "https://project.supabase.co/auth/v1"


# -- helpers ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class JwksServer:
    """A real HTTP server on 127.0.0.1:<ephemeral> serving a mutable JWKS and counting hits."""

    def __init__(self) -> None:
        self.document: Any = {"keys": []}
        self.status = 200
        self.raw_body: bytes | None = None
        self.delay = 0.0
        self.hits = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.hits += 1
                if server.delay:
                    time.sleep(server.delay)
                body = (
                    server.raw_body
                    if server.raw_body is not None
                    else json.dumps(server.document).encode()
                )
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/auth/v1/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(private_key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        jwk["alg"] = "RS256"
    else:
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        jwk["alg"] = "ES256"
    jwk.update({"kid": kid, "use": "sig", **extra})
    return jwk


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "user-123",
        "aud": AUD,
        "iss": ISS,
        "role": "authenticated",
        "iat": now,
        "exp": now + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def sign(payload: dict[str, Any], key: Any, alg: str, kid: str | None) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: Any, payload: Any, hmac_key: bytes | None = None, sig: str = "c2ln") -> str:
    """Hand-build a token (PyJWT refuses to make some of the malicious ones)."""
    h = b64(header if isinstance(header, bytes) else json.dumps(header).encode())
    p = b64(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    if hmac_key is not None:
        sig = b64(hmac.new(hmac_key, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{sig}"


def verify(verifier: JwtVerifier, token: Any) -> VerifiedToken:
    return asyncio.run(verifier.verify(token))


def rejected(verifier: JwtVerifier, token: Any) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        verify(verifier, token)
    err = info.value
    assert err.status == 401
    assert err.headers == {"WWW-Authenticate": "Bearer"}
    return err


def hs_verifier(**kwargs: Any) -> JwtVerifier:
    params: dict[str, Any] = {"secret": SECRET, "audience": AUD, "issuer": ISS}
    params.update(kwargs)
    return JwtVerifier(**params)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served(jwks_server: JwksServer, rsa_key: Any, ec_key: Any) -> JwksServer:
    jwks_server.document = {
        "keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1")],
    }
    return jwks_server


@pytest.fixture
def jwks_verifier(served: JwksServer, clock: FakeClock) -> JwtVerifier:
    return JwtVerifier(
        secret=SECRET,
        jwks_url=served.url,
        audience=AUD,
        issuer=ISS,
        jwks_cache_seconds=600,
        http_timeout_seconds=2,
        clock=clock,
    )


# -- HS256 --------------------------------------------------------------------------------------


def test_hs256_valid_token() -> None:
    token = hs256(claims(email="a@example.com"))
    result = verify(hs_verifier(), token)
    assert result == VerifiedToken(subject="user-123", claims=result.claims, is_admin=False)
    assert result.claims["email"] == "a@example.com"
    assert result.claims["aud"] == AUD


def test_verified_token_is_frozen() -> None:
    result = verify(hs_verifier(), hs256(claims()))
    with pytest.raises(AttributeError):
        result.subject = "someone-else"  # type: ignore[misc]


def test_hs256_wrong_secret_is_bad_signature() -> None:
    err = rejected(hs_verifier(), hs256(claims(), secret=OTHER_SECRET))
    assert err.detail == "invalid token signature"


def test_tampered_payload_is_bad_signature() -> None:
    token = hs256(claims())
    header, _, sig = token.split(".")
    forged = b64(json.dumps(claims(sub="admin-user")).encode())
    err = rejected(hs_verifier(), f"{header}.{forged}.{sig}")
    assert err.detail == "invalid token signature"


def test_hs256_rejected_when_no_secret_configured(served: JwksServer) -> None:
    verifier = JwtVerifier(jwks_url=served.url, audience=AUD, issuer=ISS)
    assert rejected(verifier, hs256(claims())).detail == "unsupported token algorithm"
    assert served.hits == 0


def test_empty_secret_counts_as_not_configured() -> None:
    token = raw_token({"alg": "HS256", "typ": "JWT"}, claims(), hmac_key=b"")
    err = rejected(JwtVerifier(secret="", audience=AUD), token)
    assert err.detail == "unsupported token algorithm"


# -- RS256 / ES256 via JWKS ---------------------------------------------------------------------


def test_rs256_via_jwks(jwks_verifier: JwtVerifier, served: JwksServer, rsa_key: Any) -> None:
    result = verify(jwks_verifier, sign(claims(sub="rsa-user"), rsa_key, "RS256", "rsa-1"))
    assert result.subject == "rsa-user"
    assert served.hits == 1


def test_es256_via_jwks(jwks_verifier: JwtVerifier, served: JwksServer, ec_key: Any) -> None:
    result = verify(jwks_verifier, sign(claims(sub="ec-user"), ec_key, "ES256", "ec-1"))
    assert result.subject == "ec-user"
    assert served.hits == 1


def test_asymmetric_rejected_when_no_jwks_configured(rsa_key: Any) -> None:
    err = rejected(hs_verifier(), sign(claims(), rsa_key, "RS256", "rsa-1"))
    assert err.detail == "unsupported token algorithm"


def test_rs256_signed_by_other_key_with_known_kid(
    jwks_verifier: JwtVerifier, rsa_key2: Any
) -> None:
    err = rejected(jwks_verifier, sign(claims(), rsa_key2, "RS256", "rsa-1"))
    assert err.detail == "invalid token signature"


def test_es256_signed_by_other_key_with_known_kid(jwks_verifier: JwtVerifier) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    err = rejected(jwks_verifier, sign(claims(), other, "ES256", "ec-1"))
    assert err.detail == "invalid token signature"


def test_asymmetric_token_without_kid(jwks_verifier: JwtVerifier, rsa_key: Any) -> None:
    err = rejected(jwks_verifier, sign(claims(), rsa_key, "RS256", None))
    assert err.detail == "unknown signing key"


def test_unknown_kid(jwks_verifier: JwtVerifier, served: JwksServer, rsa_key: Any) -> None:
    err = rejected(jwks_verifier, sign(claims(), rsa_key, "RS256", "nope"))
    assert err.detail == "unknown signing key"
    assert served.hits == 1  # fresh fetch already happened; no immediate second refetch


# -- algorithm attacks --------------------------------------------------------------------------


@pytest.mark.parametrize("sig", ["", "c2ln"])
@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_rejected(jwks_verifier: JwtVerifier, alg: str, sig: str) -> None:
    token = raw_token({"alg": alg, "typ": "JWT"}, claims(), sig=sig)
    err = rejected(jwks_verifier, token)
    assert err.detail in ("unsupported token algorithm", "malformed token")
    if sig:
        assert err.detail == "unsupported token algorithm"


def test_alg_none_via_pyjwt_rejected(jwks_verifier: JwtVerifier) -> None:
    token = jwt.encode(claims(), None, algorithm="none")
    rejected(jwks_verifier, token)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_rejected(alg: str) -> None:
    long_secret = SECRET * 2
    token = jwt.encode(claims(), long_secret, algorithm=alg)
    assert rejected(hs_verifier(secret=long_secret), token).detail == "unsupported token algorithm"


@pytest.mark.parametrize("alg", ["RS512", "PS256", "ES384"])
def test_other_asymmetric_algorithms_rejected(
    jwks_verifier: JwtVerifier, served: JwksServer, rsa_key: Any, alg: str
) -> None:
    key = ec.generate_private_key(ec.SECP384R1()) if alg == "ES384" else rsa_key
    token = sign(claims(), key, alg, "rsa-1")
    assert rejected(jwks_verifier, token).detail == "unsupported token algorithm"
    assert served.hits == 0


@pytest.mark.parametrize("alg", [None, 256, ["HS256"], ""])
def test_non_string_alg_rejected(alg: Any) -> None:
    token = raw_token({"alg": alg}, claims(), hmac_key=SECRET.encode())
    assert rejected(hs_verifier(), token).detail == "unsupported token algorithm"


def test_hs256_signed_with_rsa_public_pem_rejected(
    jwks_verifier: JwtVerifier, rsa_key: Any
) -> None:
    """Classic confusion: HMAC the token with the public key the attacker can download."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for kid in ("rsa-1", None):
        header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
        token = raw_token(header, claims(), hmac_key=pem)
        assert rejected(jwks_verifier, token).detail == "invalid token signature"
    # And with only a JWKS configured, HS256 is not accepted at all.
    jwks_only = JwtVerifier(jwks_url="http://127.0.0.1:1/unused", audience=AUD, issuer=ISS)
    token = raw_token({"alg": "HS256", "kid": "rsa-1"}, claims(), hmac_key=pem)
    assert rejected(jwks_only, token).detail == "unsupported token algorithm"


def test_hs256_signed_with_jwk_json_rejected(jwks_verifier: JwtVerifier, rsa_key: Any) -> None:
    jwk_bytes = json.dumps(public_jwk(rsa_key, "rsa-1")).encode()
    token = raw_token({"alg": "HS256", "kid": "rsa-1"}, claims(), hmac_key=jwk_bytes)
    assert rejected(jwks_verifier, token).detail == "invalid token signature"


def test_kid_of_other_key_type_rejected(
    jwks_verifier: JwtVerifier, rsa_key: Any, ec_key: Any
) -> None:
    # ES256 token naming the RSA key, and RS256 token naming the EC key.
    assert rejected(jwks_verifier, sign(claims(), ec_key, "ES256", "rsa-1")).detail == (
        "invalid token"
    )
    assert rejected(jwks_verifier, sign(claims(), rsa_key, "RS256", "ec-1")).detail == (
        "invalid token"
    )


def test_symmetric_jwk_in_jwks_never_used(
    jwks_server: JwksServer, rsa_key: Any, clock: FakeClock
) -> None:
    oct_secret = b"attacker-known-symmetric-key-32-bytes!!"
    jwks_server.document = {
        "keys": [
            {"kty": "oct", "kid": "sym", "k": b64(oct_secret), "alg": "HS256"},
            public_jwk(rsa_key, "rsa-1"),
        ]
    }
    verifier = JwtVerifier(jwks_url=jwks_server.url, audience=AUD, clock=clock)
    hs_token = raw_token({"alg": "HS256", "kid": "sym"}, claims(), hmac_key=oct_secret)
    assert rejected(verifier, hs_token).detail == "unsupported token algorithm"
    rs_token = sign(claims(), rsa_key, "RS256", "sym")
    assert rejected(verifier, rs_token).detail == "unknown signing key"
    # The RSA key from the same document still works.
    assert verify(verifier, sign(claims(), rsa_key, "RS256", "rsa-1")).subject == "user-123"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_unsuitable_jwks_entries_are_skipped(
    jwks_server: JwksServer, rsa_key: Any, ec_key: Any, clock: FakeClock
) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (deliberately weak)
    p384 = ec.generate_private_key(ec.SECP384R1())
    jwks_server.document = {
        "keys": [
            public_jwk(rsa_key, "enc-key", use="enc"),
            public_jwk(rsa_key, "mislabeled", alg="RS512"),
            public_jwk(small, "small"),
            {**public_jwk(p384, "p384"), "alg": "ES256"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not-a-dict",
            public_jwk(ec_key, "good"),
        ]
    }
    verifier = JwtVerifier(jwks_url=jwks_server.url, audience=AUD, clock=clock)
    for kid, key, alg in [
        ("enc-key", rsa_key, "RS256"),
        ("mislabeled", rsa_key, "RS256"),
        ("small", small, "RS256"),
    ]:
        assert rejected(verifier, sign(claims(), key, alg, kid)).detail == "unknown signing key"
    p384_token = raw_token(
        {"alg": "ES256", "kid": "p384"}, claims(), sig=b64(b"\x00" * 64)
    )  # the key is skipped before any signature check
    assert rejected(verifier, p384_token).detail == "unknown signing key"
    assert verify(verifier, sign(claims(), ec_key, "ES256", "good")).subject == "user-123"


# -- claims -------------------------------------------------------------------------------------


def test_wrong_audience() -> None:
    assert rejected(hs_verifier(), hs256(claims(aud="anon"))).detail == "invalid token audience"


def test_missing_audience() -> None:
    err = rejected(hs_verifier(), hs256(claims(aud=None)))
    assert err.detail == "token missing aud claim"


def test_audience_list_containing_ours_is_accepted() -> None:
    assert verify(hs_verifier(), hs256(claims(aud=["other", AUD]))).subject == "user-123"


def test_wrong_issuer() -> None:
    err = rejected(hs_verifier(), hs256(claims(iss="https://evil.example/auth/v1")))
    assert err.detail == "invalid token issuer"


def test_issuer_prefix_or_substring_rejected() -> None:
    for iss in (ISS[:-3], ISS + "/x", "auth"):
        assert rejected(hs_verifier(), hs256(claims(iss=iss))).detail == "invalid token issuer"


def test_missing_issuer_when_configured() -> None:
    assert rejected(hs_verifier(), hs256(claims(iss=None))).detail == "token missing iss claim"


def test_issuer_not_checked_when_not_configured() -> None:
    verifier = hs_verifier(issuer=None)
    assert verify(verifier, hs256(claims(iss=None))).subject == "user-123"
    assert verify(verifier, hs256(claims(iss="anything"))).subject == "user-123"


def test_expired() -> None:
    now = int(time.time())
    token = hs256(claims(iat=now - 7200, exp=now - 120))
    assert rejected(hs_verifier(leeway_seconds=30), token).detail == "token expired"


def test_expired_within_leeway_is_accepted() -> None:
    now = int(time.time())
    token = hs256(claims(iat=now - 7200, exp=now - 5))
    assert verify(hs_verifier(leeway_seconds=30), token).subject == "user-123"
    assert rejected(hs_verifier(leeway_seconds=0), token).detail == "token expired"


def test_not_yet_valid() -> None:
    now = int(time.time())
    token = hs256(claims(nbf=now + 600))
    assert rejected(hs_verifier(), token).detail == "token not yet valid"


def test_issued_in_the_future() -> None:
    now = int(time.time())
    token = hs256(claims(iat=now + 600, exp=now + 4200))
    assert rejected(hs_verifier(), token).detail == "token not yet valid"


def test_missing_exp() -> None:
    assert rejected(hs_verifier(), hs256(claims(exp=None))).detail == "token missing exp claim"


@pytest.mark.parametrize("exp", ["tomorrow", [1]])
def test_non_numeric_exp(exp: Any) -> None:
    assert rejected(hs_verifier(), hs256(claims(exp=exp))).detail == "invalid token"


def test_missing_sub() -> None:
    assert rejected(hs_verifier(), hs256(claims(sub=None))).detail == "token missing sub claim"


@pytest.mark.parametrize("sub", ["", "   ", 123, ["user"], {"id": "x"}])
def test_empty_or_non_string_sub(sub: Any) -> None:
    err = rejected(hs_verifier(), hs256(claims(sub=sub)))
    assert err.detail in ("token missing subject", "token missing sub claim", "invalid token")


# -- malformed ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "abc",
        "a.b",
        "a.b.c.d",
        "..",
        "!!!.???.***",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0=.c2ln",  # padding is not base64url-JWT
        "eyJhbGciOi JIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        "a" * 20_000 + ".b.c",
    ],
)
def test_malformed_structure(token: str) -> None:
    assert rejected(hs_verifier(), token).detail == "malformed token"


@pytest.mark.parametrize("token", ["", None, 42, b"a.b.c"])
def test_missing_or_non_string_token(token: Any) -> None:
    assert rejected(hs_verifier(), token).detail == "missing token"


def test_header_not_json() -> None:
    token = raw_token(b"not json at all", claims(), hmac_key=SECRET.encode())
    assert rejected(hs_verifier(), token).detail == "malformed token"


def test_header_json_not_object() -> None:
    token = raw_token(b'["HS256"]', claims(), hmac_key=SECRET.encode())
    assert rejected(hs_verifier(), token).detail == "malformed token"


def test_payload_not_json_even_with_valid_signature() -> None:
    token = raw_token({"alg": "HS256"}, b"definitely{not json", hmac_key=SECRET.encode())
    assert rejected(hs_verifier(), token).detail == "invalid token"


def test_payload_json_not_object() -> None:
    token = raw_token({"alg": "HS256"}, b'["sub", "x"]', hmac_key=SECRET.encode())
    assert rejected(hs_verifier(), token).detail == "invalid token"


def test_bad_base64_signature() -> None:
    token = hs256(claims())
    head, body, _ = token.split(".")
    assert rejected(hs_verifier(), f"{head}.{body}.A").detail == "malformed token"
    assert rejected(hs_verifier(), f"{head}.{body}.AAAA").detail == "invalid token signature"


# -- JWKS fetching, caching and rotation --------------------------------------------------------


def test_jwks_cached_between_verifies(
    jwks_verifier: JwtVerifier, served: JwksServer, rsa_key: Any, ec_key: Any, clock: FakeClock
) -> None:
    verify(jwks_verifier, sign(claims(), rsa_key, "RS256", "rsa-1"))
    clock.advance(100)
    verify(jwks_verifier, sign(claims(), ec_key, "ES256", "ec-1"))
    assert served.hits == 1


def test_jwks_refetched_after_cache_expiry(
    jwks_verifier: JwtVerifier, served: JwksServer, rsa_key: Any, clock: FakeClock
) -> None:
    token = sign(claims(), rsa_key, "RS256", "rsa-1")
    verify(jwks_verifier, token)
    clock.advance(599)
    verify(jwks_verifier, token)
    assert served.hits == 1
    clock.advance(2)
    verify(jwks_verifier, token)
    assert served.hits == 2


def test_key_rotation_refetches_once(
    jwks_verifier: JwtVerifier,
    served: JwksServer,
    rsa_key: Any,
    rsa_key2: Any,
    ec_key: Any,
    clock: FakeClock,
) -> None:
    verify(jwks_verifier, sign(claims(), rsa_key, "RS256", "rsa-1"))
    assert served.hits == 1

    served.document = {"keys": [public_jwk(rsa_key2, "rsa-2"), public_jwk(ec_key, "ec-1")]}
    clock.advance(45)
    result = verify(jwks_verifier, sign(claims(sub="rotated"), rsa_key2, "RS256", "rsa-2"))
    assert result.subject == "rotated"
    assert served.hits == 2
    # The rotated-out key is gone after the refetch.
    assert rejected(jwks_verifier, sign(claims(), rsa_key, "RS256", "rsa-1")).detail == (
        "unknown signing key"
    )
    assert served.hits == 2


def test_unknown_kid_refetch_is_rate_limited(
    jwks_verifier: JwtVerifier, served: JwksServer, rsa_key: Any, clock: FakeClock
) -> None:
    verify(jwks_verifier, sign(claims(), rsa_key, "RS256", "rsa-1"))
    clock.advance(40)
    for i in range(5):  # attacker sprays forged kids
        rejected(jwks_verifier, sign(claims(), rsa_key, "RS256", f"forged-{i}"))
        clock.advance(5)
    assert served.hits == 2  # one refetch for the first forged kid, then nothing for 30 s
    clock.advance(10)  # now 30 s since the refetch
    rejected(jwks_verifier, sign(claims(), rsa_key, "RS256", "forged-again"))
    assert served.hits == 3


def test_concurrent_unknown_kids_do_not_stampede(
    served: JwksServer, rsa_key: Any, clock: FakeClock
) -> None:
    served.delay = 0.05
    verifier = JwtVerifier(jwks_url=served.url, audience=AUD, clock=clock)
    good = sign(claims(), rsa_key, "RS256", "rsa-1")
    forged = [sign(claims(), rsa_key, "RS256", f"forged-{i}") for i in range(20)]

    async def burst() -> list[Any]:
        return await asyncio.gather(
            verifier.verify(good), *(verifier.verify(t) for t in forged), return_exceptions=True
        )

    # Two separate event loops (as separate Lambda invocations might use) share one verifier.
    for expected_hits in (1, 2):
        results = asyncio.run(burst())
        assert isinstance(results[0], VerifiedToken)
        assert all(isinstance(r, Unauthorized) for r in results[1:])
        assert served.hits == expected_hits
        clock.advance(601)


def test_jwks_fetch_does_not_block_event_loop(
    served: JwksServer, rsa_key: Any, clock: FakeClock
) -> None:
    served.delay = 0.3
    verifier = JwtVerifier(jwks_url=served.url, audience=AUD, clock=clock)
    token = sign(claims(), rsa_key, "RS256", "rsa-1")

    async def scenario() -> tuple[VerifiedToken, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        try:
            result = await verifier.verify(token)
        finally:
            done.set()
            await task
        return result, ticks

    result, ticks = asyncio.run(scenario())
    assert result.subject == "user-123"
    assert ticks >= 10


def test_jwks_unreachable(rsa_key: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    dead = JwksServer()
    url = dead.url
    dead.stop()
    verifier = JwtVerifier(jwks_url=url, audience=AUD, http_timeout_seconds=2, clock=clock)
    powertools = logging.getLogger("memlayer")  # the Powertools Logger's own logger
    powertools.addHandler(caplog.handler)
    try:
        err = rejected(verifier, sign(claims(), rsa_key, "RS256", "rsa-1"))
    finally:
        powertools.removeHandler(caplog.handler)
    assert err.detail == "token verification unavailable"
    assert "127.0.0.1" not in str(err.detail)
    assert any("JWKS fetch" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"keys": []}'),
        (404, b"not found"),
        (200, b"<html>not json</html>"),
        (200, b'{"no": "keys"}'),
        (200, b'{"keys": []}'),
        (200, b'{"keys": [{"kty": "oct", "kid": "x", "k": "c2VjcmV0"}]}'),
        (200, b"[1, 2, 3]"),
    ],
)
def test_bad_jwks_responses_are_401(
    jwks_server: JwksServer, rsa_key: Any, clock: FakeClock, status: int, body: bytes
) -> None:
    jwks_server.status, jwks_server.raw_body = status, body
    verifier = JwtVerifier(jwks_url=jwks_server.url, audience=AUD, clock=clock)
    err = rejected(verifier, sign(claims(), rsa_key, "RS256", "rsa-1"))
    assert err.detail == "token verification unavailable"
    assert jwks_server.hits == 1


def test_oversized_jwks_rejected(jwks_server: JwksServer, rsa_key: Any, clock: FakeClock) -> None:
    jwk = public_jwk(rsa_key, "rsa-1")
    jwks_server.document = {"keys": [jwk], "padding": "x" * 400_000}
    verifier = JwtVerifier(jwks_url=jwks_server.url, audience=AUD, clock=clock)
    err = rejected(verifier, sign(claims(), rsa_key, "RS256", "rsa-1"))
    assert err.detail == "token verification unavailable"


def test_jwks_failure_backs_off_then_recovers(
    jwks_server: JwksServer, rsa_key: Any, clock: FakeClock
) -> None:
    jwks_server.status = 503
    verifier = JwtVerifier(jwks_url=jwks_server.url, audience=AUD, clock=clock)
    token = sign(claims(), rsa_key, "RS256", "rsa-1")
    rejected(verifier, token)
    rejected(verifier, token)
    assert jwks_server.hits == 1  # no retry within the failure backoff

    jwks_server.status = 200
    jwks_server.document = {"keys": [public_jwk(rsa_key, "rsa-1")]}
    clock.advance(6)
    assert verify(verifier, token).subject == "user-123"
    assert jwks_server.hits == 2


def test_stale_keys_used_while_jwks_is_down(
    jwks_verifier: JwtVerifier, served: JwksServer, rsa_key: Any, clock: FakeClock
) -> None:
    token = sign(claims(), rsa_key, "RS256", "rsa-1")
    verify(jwks_verifier, token)
    served.status = 500
    clock.advance(700)  # cache expired, refetch fails
    assert verify(jwks_verifier, token).subject == "user-123"
    assert served.hits == 2
    clock.advance(3 * 3600)  # far too stale to trust
    assert rejected(jwks_verifier, token).detail == "unknown signing key"


# -- admin detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"app_metadata": {"role": "admin"}}, True),
        ({"app_metadata": {"role": ["user", "admin"]}}, True),
        ({"app_metadata": {"role": "user"}}, False),
        ({"app_metadata": {"role": ["user"]}}, False),
        ({"app_metadata": {"role": "administrator"}}, False),
        ({"app_metadata": {"role": {"admin": True}}}, False),
        ({"app_metadata": "admin"}, False),
        ({"app_metadata": {}}, False),
        ({"user_metadata": {"role": "admin"}}, False),  # user-editable, must not count
        ({"role": "admin"}, False),
        ({}, False),
    ],
)
def test_admin_claim_detection(extra: dict[str, Any], expected: bool) -> None:
    assert verify(hs_verifier(), hs256(claims(**extra))).is_admin is expected


def test_custom_admin_claim_path_and_value() -> None:
    verifier = hs_verifier(admin_role_claim="app_metadata.claims.tier", admin_role_value="staff")
    token = hs256(claims(app_metadata={"claims": {"tier": ["staff"]}}))
    assert verify(verifier, token).is_admin is True
    token = hs256(claims(app_metadata={"claims": {"tier": "admin"}}))
    assert verify(verifier, token).is_admin is False


# -- mint_dev_token and from_settings -----------------------------------------------------------


def test_mint_dev_token_round_trip() -> None:
    verifier = hs_verifier(issuer=None)
    user = verify(verifier, mint_dev_token(SECRET, "dev-user"))
    assert (user.subject, user.is_admin) == ("dev-user", False)
    assert user.claims["exp"] - user.claims["iat"] == 86400
    admin = verify(verifier, mint_dev_token(SECRET, "dev-admin", admin=True))
    assert admin.is_admin is True
    assert admin.claims["app_metadata"] == {"role": "admin"}


def test_mint_dev_token_options() -> None:
    token = mint_dev_token(
        SECRET,
        "u1",
        admin=True,
        ttl_seconds=60,
        audience="other-aud",
        role_claim="app_metadata.roles",
        issuer=ISS,
    )
    verifier = hs_verifier(audience="other-aud", admin_role_claim="app_metadata.roles")
    result = verify(verifier, token)
    assert result.is_admin is True
    assert result.claims["exp"] - result.claims["iat"] == 60
    assert rejected(hs_verifier(), token).detail == "invalid token audience"


def test_mint_dev_token_expired_ttl_and_wrong_secret() -> None:
    token = mint_dev_token(SECRET, "u1")
    assert rejected(hs_verifier(secret=OTHER_SECRET, issuer=None), token).detail == (
        "invalid token signature"
    )
    with pytest.raises(ValueError):
        mint_dev_token("", "u1")
    with pytest.raises(ValueError):
        mint_dev_token(SECRET, "")
    with pytest.raises(ValueError):
        mint_dev_token(SECRET, "u1", ttl_seconds=0)


def test_from_settings(served: JwksServer, rsa_key: Any) -> None:
    from memlayer.settings import Settings

    settings = Settings(
        environment="test",
        supabase_jwt_secret=SECRET,
        supabase_jwks_url=served.url,
        jwt_issuer=ISS,
        admin_role_claim="app_metadata.role",
        admin_role_value="admin",
    )
    verifier = JwtVerifier.from_settings(settings)
    admin = verify(verifier, hs256(claims(app_metadata={"role": "admin"})))
    assert admin.is_admin is True
    assert verify(verifier, sign(claims(), rsa_key, "RS256", "rsa-1")).subject == "user-123"
    assert rejected(verifier, hs256(claims(iss="https://other"))).detail == "invalid token issuer"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", str(int(time.time()) + 3600)),
        ("exp", True),
        ("exp", float("inf")),
        ("exp", [int(time.time()) + 3600]),
        ("nbf", str(int(time.time()) - 10)),
        ("iat", str(int(time.time()))),
        ("iat", None),
    ],
    # Stable ids: xdist workers must collect the same tests although the values hold the time.
    ids=["exp-string", "exp-bool", "exp-inf", "exp-list", "nbf-string", "iat-string", "iat-null"],
)
def test_time_claims_must_be_numbers(claim: str, value: Any) -> None:
    """RFC 7519 NumericDate only: PyJWT alone takes a numeric string for `exp`; infinity made
    it overflow (a 500)."""
    payload = claims()
    payload[claim] = value
    token = raw_token({"alg": "HS256", "typ": "JWT"}, payload, hmac_key=SECRET.encode())
    rejected(hs_verifier(), token)


def test_numeric_time_claims_pass() -> None:
    now = int(time.time())
    assert verify(hs_verifier(), hs256(claims(iat=now - 5.5, nbf=now - 1, exp=now + 60.25)))
