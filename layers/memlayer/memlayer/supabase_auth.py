"""Supabase Auth's admin API (supabase-py's `supabase_auth` client): deleting the user when
their account is erased. Configured by SUPABASE_URL + SUPABASE_SERVICE_ROLE_KEY (deployed:
the ARN of its secret, SUPABASE_SERVICE_ROLE_KEY_ARN)."""

from __future__ import annotations

import uuid

from memlayer import secrets
from memlayer.settings import get_settings


async def delete_auth_user(user_id: str) -> bool | None:
    """Deletes the Supabase Auth user `user_id`: True when deleted (or already gone), None when
    Supabase Auth is not configured or the id is not a Supabase user id (a UUID). Other
    failures raise, so the erase fails and can be repeated."""
    settings = get_settings()
    if not settings.supabase_url or not secrets.configured("supabase_service_role_key", settings):
        return None
    try:
        uuid.UUID(user_id)
    except ValueError:
        return None
    # Imported here: only erasing an account needs the client (and it pulls in h2).
    from supabase_auth import AsyncGoTrueAdminAPI
    from supabase_auth.errors import AuthApiError

    key = secrets.value("supabase_service_role_key", settings)
    if key is None:
        return None
    secret = key.get_secret_value()
    # A client per call: its httpx client belongs to the calling event loop, and erasing an
    # account is rare.
    admin = AsyncGoTrueAdminAPI(
        url=f"{settings.supabase_url.rstrip('/')}/auth/v1",
        headers={"apikey": secret, "Authorization": f"Bearer {secret}"},
    )
    try:
        await admin.delete_user(user_id)
    except AuthApiError as exc:
        if exc.status != 404:
            raise
    finally:
        await admin.close()
    return True
