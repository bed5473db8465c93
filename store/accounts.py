"""Which Godo user a sign-in belongs to: `users.auth_id` (the provider's UUID) to `users.id`.

Tokens from the identity provider (Supabase) name the account by UUID; every table keys users
by BIGINT. The mapping never changes for a given account, so the API remembers the answers it
found for a while, and only those: an account not linked yet is looked up again on its next
request, so it works the moment its user row exists.
"""

from __future__ import annotations

import threading
import time
import uuid

import sqlalchemy as sa

_USER_FOR_AUTH_ID = sa.text("SELECT id FROM users WHERE auth_id = :auth_id")
REMEMBER_SECONDS = 300.0


def user_id_for_auth_id(conn: sa.Connection, auth_id: uuid.UUID) -> int | None:
    """The user whose sign-in is `auth_id`, or None when no user row is linked to it."""
    value = conn.execute(_USER_FOR_AUTH_ID, {"auth_id": auth_id}).scalar()
    return None if value is None else int(value)


class AccountDirectory:
    """`user_id_for_auth_id` with the answers found remembered for `REMEMBER_SECONDS`.

    Bounded: the oldest half goes when full. A deleted user is forgotten within the period,
    and until then their requests fail as any request for a missing user does.
    """

    def __init__(self, *, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._found: dict[uuid.UUID, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def remembered(self, auth_id: uuid.UUID) -> int | None:
        """A user id found recently for `auth_id`; never queries (safe on the event loop)."""
        hit = self._found.get(auth_id)
        if hit is not None and time.monotonic() < hit[1]:
            return hit[0]
        return None

    def user_id(self, engine: sa.Engine, auth_id: uuid.UUID) -> int | None:
        """The user id for `auth_id`, from memory or Postgres. Blocking: call from a thread."""
        remembered = self.remembered(auth_id)
        if remembered is not None:
            return remembered
        with engine.connect() as conn:
            user_id = user_id_for_auth_id(conn, auth_id)
        if user_id is not None:
            with self._lock:
                if len(self._found) >= self.max_entries:
                    for old in list(self._found)[: self.max_entries // 2]:
                        del self._found[old]
                self._found[auth_id] = (user_id, time.monotonic() + REMEMBER_SECONDS)
        return user_id
