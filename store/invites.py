"""Friend invitations by email. The links they carry are signed in `core.links`.

Abuse limits, checked and recorded in one transaction under advisory locks on the inviter and
the address (so two concurrent requests cannot both squeeze under a limit):

- at most `settings.invite_daily_limit` invites per inviter in any 24 hours (429);
- at most `settings.invite_recipient_daily_limit` invites to one address in any 24 hours,
  whoever sends them, so many accounts cannot flood one mailbox (429);
- one pending invite per (inviter, address): neither accepted, expired nor failed to send (409).

Every invite counts towards the 24-hour limits, failed sends included, so failures cannot be
used to probe without limit.

`send_invite` is the use case behind `POST /v1/invites`: record the invite (committed, so the
limits hold whoever sends), sign its link, send through the `InvitationMailer` the caller
passes in (the API's is Resend, `serving.invitations`; this layer imports no provider), then
record the outcome. A provider failure leaves a `failed` row, which does not block inviting
the same address again, and raises `InviteNotSentError`.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.links import issue_invite_token
from core.settings import Settings
from store.schema import invites, notification_preferences, users

log = logging.getLogger(__name__)

DAY = timedelta(days=1)

MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}")


# --------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------


class InvalidEmailError(ValueError):
    """Not an address we will send to; the message says why (safe to show)."""


def normalise_email(address: str) -> str:
    """The address trimmed and lower-cased, or `InvalidEmailError`.

    Deliberately stricter than RFC 5322 (no quoted local parts, no IP literals, no comments):
    those are legal but almost always typos or abuse, and the provider may refuse them anyway.
    Internationalised domains are accepted and stored in their IDNA (punycode) form.
    """
    text = address.strip()
    if len(text) > MAX_EMAIL_LENGTH:
        raise InvalidEmailError(f"must be at most {MAX_EMAIL_LENGTH} characters")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise InvalidEmailError("must be an email address like name@example.com")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise InvalidEmailError("the part before '@' is not a valid mailbox name")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise InvalidEmailError("the domain is not a valid host name") from error
    labels = ascii_domain.split(".")
    if (
        len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or not _TLD.fullmatch(labels[-1])
    ):
        raise InvalidEmailError("the domain is not a valid host name")
    return f"{local}@{ascii_domain}".lower()


# --------------------------------------------------------------------------------------------
# Invites
# --------------------------------------------------------------------------------------------


class UnknownInviterError(LookupError):
    """The caller has no `users` row (a token minted for an id nobody has)."""


class TooManyInvitesError(Exception):
    """A 24-hour limit is reached; `retry_after_seconds` is when one slot frees."""

    def __init__(
        self, scope: Literal["inviter", "recipient"], limit: int, retry_after_seconds: int
    ) -> None:
        super().__init__(f"{scope} limit of {limit} invites per day")
        self.scope = scope
        self.limit = limit
        self.retry_after_seconds = retry_after_seconds


class AlreadyInvitedError(Exception):
    """The inviter has a pending invite for this address until `expires_at`."""

    def __init__(self, invite_id: uuid.UUID, expires_at: datetime) -> None:
        super().__init__(f"invite {invite_id} is pending")
        self.invite_id = invite_id
        self.expires_at = expires_at


@dataclass(frozen=True)
class NewInvite:
    id: uuid.UUID
    email: str
    inviter_name: str
    created_at: datetime
    expires_at: datetime


def create_invite(
    engine: sa.Engine,
    *,
    inviter_id: int,
    email: str,
    settings: Settings,
    now: datetime | None = None,
) -> NewInvite:
    """Check the limits and record a `pending` invite, atomically; `email` is normalised."""
    now = now or datetime.now(UTC)
    expires_at = now + timedelta(days=settings.invite_ttl_days)
    with engine.begin() as conn:
        name = conn.execute(
            sa.select(users.c.display_name).where(users.c.id == inviter_id)
        ).scalar_one_or_none()
        if name is None:
            raise UnknownInviterError(inviter_id)
        # Inviter first, then address: every transaction takes them in this order.
        for key in (f"godo:invites:inviter:{inviter_id}", f"godo:invites:email:{email}"):
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
            )
        pending = conn.execute(
            sa.select(invites.c.id, invites.c.expires_at)
            .where(
                invites.c.inviter_id == inviter_id,
                invites.c.email == email,
                invites.c.accepted_at.is_(None),
                invites.c.expires_at > now,
                invites.c.send_status != "failed",
            )
            .limit(1)
        ).first()
        if pending is not None:
            raise AlreadyInvitedError(pending.id, pending.expires_at)
        _check_window(
            conn, invites.c.inviter_id == inviter_id, now, settings.invite_daily_limit, "inviter"
        )
        _check_window(
            conn, invites.c.email == email, now, settings.invite_recipient_daily_limit, "recipient"
        )
        invite_id = uuid.uuid4()
        conn.execute(
            sa.insert(invites).values(
                id=invite_id,
                inviter_id=inviter_id,
                email=email,
                created_at=now,
                expires_at=expires_at,
            )
        )
    return NewInvite(invite_id, email, name, now, expires_at)


def _check_window(
    conn: sa.Connection,
    who: sa.ColumnElement[bool],
    now: datetime,
    limit: int,
    scope: Literal["inviter", "recipient"],
) -> None:
    """Raise when `limit` invites matching `who` were created in the 24 hours before `now`."""
    times = (
        conn.execute(
            sa.select(invites.c.created_at)
            .where(who, invites.c.created_at > now - DAY)
            .order_by(invites.c.created_at.desc())
            .limit(limit)
        )
        .scalars()
        .all()
    )
    if len(times) >= limit:
        frees_at = times[-1] + DAY  # the oldest of the newest `limit` leaves the window
        wait = max(1, math.ceil((frees_at - now).total_seconds()))
        raise TooManyInvitesError(scope, limit, wait)


def record_send(
    engine: sa.Engine,
    invite_id: uuid.UUID,
    *,
    status: Literal["sent", "failed"],
    provider_message_id: str | None = None,
    detail: str | None = None,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(invites)
            .where(invites.c.id == invite_id)
            .values(send_status=status, provider_message_id=provider_message_id, send_detail=detail)
        )


class EmailNotSentError(Exception):
    """The mailer could not hand the email to its provider; the message says why."""


class InviteNotSentError(Exception):
    """The invite is recorded as `failed`: the provider did not take the email."""

    def __init__(self, invite_id: uuid.UUID, reason: str) -> None:
        super().__init__(f"invite {invite_id} not sent: {reason}")
        self.invite_id = invite_id
        self.reason = reason


class InvitationMailer(Protocol):
    """Renders and sends one invitation email; what `send_invite` needs from a provider."""

    def send_invitation(self, invite: NewInvite, *, invite_url: str, idempotency_key: str) -> str:
        """Send the invitation to `invite.email`; the provider's message id, or
        `EmailNotSentError`. The same `idempotency_key` never sends twice."""
        ...


def send_invite(
    engine: sa.Engine,
    settings: Settings,
    mailer: InvitationMailer,
    *,
    inviter_id: int,
    email: str,
    now: datetime | None = None,
) -> NewInvite:
    """Record an invite (`create_invite`: its errors are raised before anything is sent),
    email its signed link, and record what the provider said.

    The invite row is committed before the provider is called, so no transaction is held
    open over the network; the outcome is a second, short one. `InviteNotSentError` when the
    provider refused or was unreachable (the row says `failed` with the reason).
    """
    invite = create_invite(engine, inviter_id=inviter_id, email=email, settings=settings, now=now)
    token = issue_invite_token(
        settings, invite_id=invite.id, inviter_id=inviter_id, expires_at=invite.expires_at
    )
    try:
        message_id = mailer.send_invitation(
            invite,
            invite_url=settings.invite_url_template.format(token=token),
            idempotency_key=f"godo-invite-{invite.id}",
        )
    except EmailNotSentError as error:
        log.warning("invite %s could not be sent: %s", invite.id, error)
        record_send(engine, invite.id, status="failed", detail=str(error)[:500])
        raise InviteNotSentError(invite.id, str(error)) from error
    record_send(engine, invite.id, status="sent", provider_message_id=message_id)
    return invite


@dataclass(frozen=True)
class InviteView:
    """What the app shows on the invitation screen."""

    id: uuid.UUID
    inviter_id: int
    inviter_name: str
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None


def find_invite(engine: sa.Engine, invite_id: uuid.UUID) -> InviteView | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                invites.c.id,
                invites.c.inviter_id,
                users.c.display_name.label("inviter_name"),
                invites.c.created_at,
                invites.c.expires_at,
                invites.c.accepted_at,
            )
            .join(users, users.c.id == invites.c.inviter_id)
            .where(invites.c.id == invite_id)
        ).first()
    return None if row is None else InviteView(**row._asdict())


# --------------------------------------------------------------------------------------------
# Unsubscribe
# --------------------------------------------------------------------------------------------


def unsubscribe_email(engine: sa.Engine, user_id: int, *, now: datetime | None = None) -> datetime:
    """Stop all non-essential email to `user_id`; idempotent (the first time is kept).

    Upserts the preferences row, since a user on defaults has none. Raises `LookupError`
    when the user no longer exists.
    """
    now = now or datetime.now(UTC)
    insert = pg_insert(notification_preferences).values(
        user_id=user_id, email_unsubscribed_at=now, updated_at=now
    )
    statement = insert.on_conflict_do_update(
        index_elements=[notification_preferences.c.user_id],
        set_={
            "email_unsubscribed_at": sa.func.coalesce(
                notification_preferences.c.email_unsubscribed_at, now
            ),
            "updated_at": now,
        },
    ).returning(notification_preferences.c.email_unsubscribed_at)
    with engine.begin() as conn:
        exists = conn.execute(sa.select(users.c.id).where(users.c.id == user_id)).first()
        if exists is None:
            raise LookupError(user_id)
        unsubscribed_at: datetime = conn.execute(statement).scalar_one()
    return unsubscribed_at
