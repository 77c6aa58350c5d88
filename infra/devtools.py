"""`make dev` helpers: what to print once the local cloud is up."""

from __future__ import annotations

from typing import Any

DEV_USER = "dev-user"


def on_ready(cloud: Any) -> None:
    from memlayer import secrets
    from memlayer.auth.jwt import mint_dev_token
    from memlayer.settings import get_settings

    get_settings.cache_clear()
    # The local cloud moved SUPABASE_JWT_SECRET into its Secrets Manager, as a deploy does.
    secret = secrets.value("supabase_jwt_secret")
    if secret is None:
        print("SUPABASE_JWT_SECRET is not set: no dev token (JWKS mode).")
        return
    token = mint_dev_token(secret.get_secret_value(), DEV_USER, admin=True)
    base = cloud.base_url
    print(
        f"""
memlayer is running at {base}   (WebSocket: {cloud.ws_url}?token=$TOKEN; MCP: {base}/mcp)

A dev token for user '{DEV_USER}' (admin, valid 24 h):

export TOKEN={token}

Try it:

curl -s -X POST {base}/v1/memories -H "Authorization: Bearer $TOKEN" \\
  -H 'content-type: application/json' -d '{{"content": "The staging database is on port 6543"}}'
curl -s -X POST {base}/v1/search -H "Authorization: Bearer $TOKEN" \\
  -H 'content-type: application/json' -d '{{"query": "staging database port"}}'
""",
        flush=True,
    )


def event_with_token(path: str) -> str:
    """A sample event with its `DEV_TOKEN` placeholder replaced by a fresh dev token (what
    `make invoke` feeds the function)."""
    from pathlib import Path

    from memlayer import secrets
    from memlayer.auth.jwt import mint_dev_token

    text = Path(path).read_text()
    # The environment's secret, or (inside a running local cloud) the one it moved into its
    # Secrets Manager, as the functions read it.
    secret = secrets.value("supabase_jwt_secret")
    if secret is not None and "DEV_TOKEN" in text:
        token = mint_dev_token(secret.get_secret_value(), DEV_USER, admin=True)
        text = text.replace("DEV_TOKEN", token)
    return text


if __name__ == "__main__":
    import sys

    print(event_with_token(sys.argv[1]))
