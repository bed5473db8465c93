"""Friend invitations by email, and one-click unsubscribe from Godo's emails.

- `POST /v1/invites`: the caller invites an address; the invite is recorded (with its abuse
  limits, `store.invites`) before the email is sent through Resend, and its send outcome
  afterwards, so a provider outage leaves a `failed` row that does not block a retry.
- `GET /v1/invites/{token}`: no login (the invitee has no account yet): is this link valid,
  and who sent it? 410 once expired, 404 when it is not ours.
- `GET|POST /v1/email/unsubscribe?token=...`: no login either, as the law and mailbox
  providers require; POST is RFC 8058's one-click (`List-Unsubscribe-Post`), which mail
  clients send without a person present. Both are idempotent.

Each action is one store call (`store.invites.send_invite` records, sends through the mailer
and records the outcome); the mailer comes from `serving.deps.InvitationMailerDep`, built from
settings (`resend_base_url`, `RESEND_API_KEY`); tests point the base URL at
`sources.resend.fake` or override the dependency.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.links import (
    LinkExpiredError,
    LinkInvalidError,
    verify_invite_token,
    verify_unsubscribe_token,
)
from core.settings import Settings
from serving.deps import (
    EMAIL_RETRY_AFTER_SECONDS,
    CurrentUserId,
    EngineDep,
    InvitationMailerDep,
    SettingsDep,
)
from serving.observability import record_notification
from serving.problem_types import (
    ALREADY_INVITED,
    EMAIL_UNAVAILABLE,
    INVITE_EXPIRED,
    INVITE_LIMIT_REACHED,
    STORE_UNAVAILABLE,
)
from serving.problems import ProblemError, problem_responses
from serving.schemas import StoredText
from store.invites import (
    AlreadyInvitedError,
    InviteNotSentError,
    TooManyInvitesError,
    UnknownInviterError,
    find_invite,
    normalise_email,
    send_invite,
    unsubscribe_email,
)

router = APIRouter()

_EXAMPLE_TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhdWQiOiJnb2RvLWludml0ZSJ9.c2ln"


# --------------------------------------------------------------------------------------------
# Invites
# --------------------------------------------------------------------------------------------


class InviteIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "rui@example.com"}]})

    email: StoredText = Field(max_length=320, description="The friend's email address.")

    @field_validator("email")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return normalise_email(value)  # InvalidEmailError is a ValueError: a 422 on body.email


class InviteOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b7e4f7e-3f7a-4d59-9a43-1b2f3c4d5e6f",
                    "email": "rui@example.com",
                    "expires_at": "2026-12-14T10:00:00Z",
                    "send_status": "sent",
                }
            ]
        }
    )

    id: uuid.UUID
    email: str = Field(description="The address, normalised (trimmed, lower-case).")
    expires_at: datetime = Field(description="When the link in the email stops working.")
    send_status: str = Field(description="`sent`: the provider accepted the email.")


class InviterOut(BaseModel):
    user_id: int
    display_name: str


class InviteStatusOut(BaseModel):
    """A valid invitation, for the screen the link opens."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "inviter": {"user_id": 42, "display_name": "Ana"},
                    "expires_at": "2026-12-14T10:00:00Z",
                    "accepted": False,
                }
            ]
        }
    )

    inviter: InviterOut
    expires_at: datetime
    accepted: bool = Field(description="Whether the invitation was already accepted.")


_POST_EXAMPLES: dict[int, dict[str, dict[str, Any]]] = {
    404: {"Unknown caller": {"detail": "User 42 does not exist."}},
    409: {
        "Already invited": {
            "kind": ALREADY_INVITED,
            "detail": "You already invited rui@example.com; that invitation is valid until "
            "2026-12-14T10:00:00+00:00.",
        }
    },
    422: {
        "Invalid address": {
            "detail": "body.email: Value error, must be an email address like name@example.com",
            "errors": [
                {
                    "loc": ["body", "email"],
                    "field": "body.email",
                    "msg": "Value error, must be an email address like name@example.com",
                    "type": "value_error",
                }
            ],
        }
    },
    429: {
        "Daily invite limit": {
            "kind": INVITE_LIMIT_REACHED,
            "detail": "You can send at most 20 invitations in 24 hours; retry in 3600 s.",
        },
        "Recipient limit": {
            "kind": INVITE_LIMIT_REACHED,
            "detail": "This address has received 3 invitations in 24 hours; retry in 3600 s.",
        },
        "Rate limited": {
            "detail": "Rate limit exceeded for this user (100 requests per minute, bursts of "
            "200); retry in 1 s."
        },
    },
    503: {
        "Provider unavailable": {
            "kind": EMAIL_UNAVAILABLE,
            "detail": "The invitation could not be sent right now; retry shortly.",
        },
        "Email not configured": {
            "kind": EMAIL_UNAVAILABLE,
            "detail": "Email is not configured on this server (RESEND_API_KEY is unset).",
        },
        "Store unavailable": {
            "kind": STORE_UNAVAILABLE,
            "detail": "A data store is temporarily unreachable; retry shortly.",
        },
    },
}


@router.post(
    "/invites",
    response_model=InviteOut,
    status_code=201,
    tags=["invites"],
    summary="Invite a friend by email",
    responses=problem_responses(
        400, 401, 404, 409, 413, 422, 429, 503, instance="/v1/invites", examples=_POST_EXAMPLES
    ),
)
def post_invite(
    request: Request,
    body: InviteIn,
    user_id: CurrentUserId,
    engine: EngineDep,
    settings: SettingsDep,
    mailer: InvitationMailerDep,
) -> InviteOut:
    """Record the invite, then email a signed link valid for `invite_ttl_days`.

    Abuse limits (429 with `Retry-After`): `invite_daily_limit` invites per caller and
    `invite_recipient_daily_limit` per address in any 24 hours. 409 while the caller's previous
    invite to the same address is pending. 503 when the provider cannot take the email: the
    invite is kept as `failed` and inviting again is allowed.
    """
    try:
        invite = send_invite(engine, settings, mailer, inviter_id=user_id, email=body.email)
    except UnknownInviterError as error:
        raise HTTPException(404, f"User {user_id} does not exist.") from error
    except AlreadyInvitedError as error:
        raise ProblemError(
            ALREADY_INVITED,
            f"You already invited {body.email}; that invitation is valid until "
            f"{error.expires_at.isoformat()}.",
        ) from error
    except TooManyInvitesError as error:
        detail = (
            f"You can send at most {error.limit} invitations in 24 hours"
            if error.scope == "inviter"
            else f"This address has received {error.limit} invitations in 24 hours"
        )
        raise ProblemError(
            INVITE_LIMIT_REACHED,
            f"{detail}; retry in {error.retry_after_seconds} s.",
            headers={"Retry-After": str(error.retry_after_seconds)},
        ) from error
    except InviteNotSentError as error:
        record_notification(request, channel="email", kind="invite", outcome="failed")
        raise ProblemError(
            EMAIL_UNAVAILABLE,
            "The invitation could not be sent right now; retry shortly.",
            headers={"Retry-After": str(EMAIL_RETRY_AFTER_SECONDS)},
        ) from error
    record_notification(request, channel="email", kind="invite", outcome="sent")
    return InviteOut(
        id=invite.id, email=invite.email, expires_at=invite.expires_at, send_status="sent"
    )


@router.get(
    "/invites/{token}",
    response_model=InviteStatusOut,
    tags=["invites"],
    summary="Check an invitation link (no login)",
    responses=problem_responses(
        404,
        410,
        422,
        429,
        503,
        instance=f"/v1/invites/{_EXAMPLE_TOKEN}",
        examples={
            404: {"Unknown link": {"detail": "This invitation link is not valid."}},
            410: {"Expired": {"kind": INVITE_EXPIRED, "detail": "This invitation has expired."}},
        },
    ),
)
def get_invite(
    token: Annotated[StoredText, Path(description="The signed token from the invitation link.")],
    engine: EngineDep,
    settings: SettingsDep,
) -> InviteStatusOut:
    """200 with the inviter while the link works; 410 once expired, 404 if it is not ours."""
    try:
        invite_id = verify_invite_token(settings, token)
    except LinkExpiredError as error:
        raise ProblemError(INVITE_EXPIRED, "This invitation has expired.") from error
    except LinkInvalidError as error:
        raise HTTPException(404, "This invitation link is not valid.") from error
    invite = find_invite(engine, invite_id)
    if invite is None:  # e.g. the inviter deleted their account
        raise HTTPException(404, "This invitation link is not valid.")
    return InviteStatusOut(
        inviter=InviterOut(user_id=invite.inviter_id, display_name=invite.inviter_name),
        expires_at=invite.expires_at,
        accepted=invite.accepted_at is not None,
    )


# --------------------------------------------------------------------------------------------
# Unsubscribe
# --------------------------------------------------------------------------------------------


class UnsubscribedOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"unsubscribed": True, "unsubscribed_at": "2026-11-30T08:00:00Z"}]
        }
    )

    unsubscribed: bool = True
    unsubscribed_at: datetime = Field(description="When email was first switched off.")


UnsubscribeToken = Annotated[
    StoredText, Query(min_length=1, max_length=2048, description="The signed token from the email.")
]
_UNSUBSCRIBE_RESPONSES = problem_responses(
    404,
    422,
    429,
    503,
    instance="/v1/email/unsubscribe",
    examples={404: {"Unknown link": {"detail": "This unsubscribe link is not valid."}}},
)


async def _unsubscribe(token: str, engine: EngineDep, settings: Settings) -> UnsubscribedOut:
    try:
        user_id = verify_unsubscribe_token(settings, token)
    except (LinkInvalidError, LinkExpiredError) as error:
        raise HTTPException(404, "This unsubscribe link is not valid.") from error
    try:
        at = await run_in_threadpool(unsubscribe_email, engine, user_id)
    except LookupError as error:  # the account was deleted: nothing will be sent anyway
        raise HTTPException(404, "This unsubscribe link is not valid.") from error
    return UnsubscribedOut(unsubscribed_at=at)


@router.get(
    "/email/unsubscribe",
    response_model=UnsubscribedOut,
    tags=["email"],
    summary="Unsubscribe from Godo's emails (link in every digest; no login)",
    responses=_UNSUBSCRIBE_RESPONSES,
)
async def get_unsubscribe(
    token: UnsubscribeToken, engine: EngineDep, settings: SettingsDep
) -> UnsubscribedOut:
    """Switch off digest email for the link's user; repeating it changes nothing."""
    return await _unsubscribe(token, engine, settings)


@router.post(
    "/email/unsubscribe",
    response_model=UnsubscribedOut,
    tags=["email"],
    summary="One-click unsubscribe (RFC 8058 `List-Unsubscribe-Post`; no login)",
    responses=_UNSUBSCRIBE_RESPONSES,
)
async def post_unsubscribe(
    token: UnsubscribeToken, engine: EngineDep, settings: SettingsDep, response: Response
) -> UnsubscribedOut:
    """What mail clients call for their unsubscribe button, with the body
    `List-Unsubscribe=One-Click` (not parsed: the signed token alone decides)."""
    response.headers["Cache-Control"] = "no-store"
    return await _unsubscribe(token, engine, settings)
