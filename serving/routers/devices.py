"""Devices and notification preferences: `POST/DELETE /v1/me/devices`, `PUT .../preferences`.

Thin over `store.notifications`. Registering is an idempotent upsert (the app calls it on every
launch); a token another account had moves to the caller, and the previous owner is told
through their live stream (`device_moved`): the usual case is one phone and a new login, and
an Expo token is known only to the device and Expo, so proof of possession (a push round trip
the app answers) would cost every legitimate re-login a step to stop a rare misuse that the
notice already makes visible. Deleting is the logout call and is
scoped to the caller: 204 whether or not the caller had the token, and a stranger's DELETE of
someone else's token deletes nothing (and does not learn whether it exists).
"""

from __future__ import annotations

import logging
from datetime import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.deps import CurrentUserId, EngineDep, KeysDep, RedisDep
from serving.problems import problem_responses
from serving.schemas import StoredText
from store.errors import UnknownUserError
from store.live_events import publish_device_moved
from store.notifications import (
    DEFAULT_REMINDER_LEAD_MINUTES,
    Preferences,
    is_expo_token,
    is_known_timezone,
    register_device,
    set_preferences,
    unregister_device,
)

router = APIRouter(tags=["notifications"])
log = logging.getLogger(__name__)

TOKEN_EXAMPLE = "ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]"
_INVALID_TOKEN = {
    "Invalid push token": {
        "detail": "body.expo_push_token: Value error, expo_push_token must look like "
        "ExponentPushToken[...] or ExpoPushToken[...]",
        "errors": [
            {
                "loc": ["body", "expo_push_token"],
                "field": "body.expo_push_token",
                "msg": "Value error, expo_push_token must look like ExponentPushToken[...] or "
                "ExpoPushToken[...]",
                "type": "value_error",
            }
        ],
    }
}
_UNKNOWN_USER = {"Unknown user": {"detail": "User 42 does not exist."}}


class DeviceIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"expo_push_token": TOKEN_EXAMPLE, "platform": "ios"}]}
    )

    expo_push_token: StoredText = Field(
        max_length=256, description="From `Notifications.getExpoPushTokenAsync()`."
    )
    platform: Literal["ios", "android"]

    @field_validator("expo_push_token")
    @classmethod
    def _token_shape(cls, value: str) -> str:
        if not is_expo_token(value):
            raise ValueError(
                "expo_push_token must look like ExponentPushToken[...] or ExpoPushToken[...]"
            )
        return value


class DeviceOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"expo_push_token": TOKEN_EXAMPLE, "platform": "ios", "created": True}]
        }
    )

    expo_push_token: str
    platform: Literal["ios", "android"]
    created: bool = Field(description="False when the caller had registered it already.")


class PreferencesIn(BaseModel):
    """The push preferences, replaced as a whole (omitted fields take their defaults)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "reminder_lead_minutes": 90,
                    "quiet_start": "22:00:00",
                    "quiet_end": "07:30:00",
                    "timezone": "Europe/Lisbon",
                }
            ]
        }
    )

    reminder_lead_minutes: int = Field(
        default=DEFAULT_REMINDER_LEAD_MINUTES,
        strict=True,  # a whole number, as documented: no "30" or 30.0 coerced
        ge=0,
        le=10080,
        description="How long before a `going` event the reminder comes; 0 turns them off.",
    )
    quiet_start: time | None = Field(
        default=None, description="Start of quiet hours, on the user's clock (may wrap midnight)."
    )
    quiet_end: time | None = Field(default=None, description="End of quiet hours.")
    timezone: StoredText | None = Field(
        default=None, description="IANA zone of the quiet hours; UTC when unset."
    )

    @field_validator("quiet_start", "quiet_end", mode="before")
    @classmethod
    def _time_text_only(cls, value: object) -> object:
        """Only the `HH:MM[:SS]` strings the schema documents, never a number of seconds
        (which pydantic would otherwise coerce into a time)."""
        if isinstance(value, int | float):
            raise ValueError("must be a time of day as text, e.g. '22:00'")
        return value

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _wall_clock(cls, value: time | None) -> time | None:
        """Quiet hours are a time on the user's clock (`timezone` says which); an offset
        would contradict it."""
        if value is not None and value.tzinfo is not None:
            raise ValueError("must be a time of day without a UTC offset; set `timezone`")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and not is_known_timezone(value):
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value

    @model_validator(mode="after")
    def _both_or_neither(self) -> PreferencesIn:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet_start and quiet_end must be given together")
        return self


class PreferencesOut(PreferencesIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "reminder_lead_minutes": 90,
                    "quiet_start": "22:00:00",
                    "quiet_end": "07:30:00",
                    "timezone": "Europe/Lisbon",
                }
            ]
        }
    )


@router.post(
    "/me/devices",
    response_model=DeviceOut,
    status_code=201,
    summary="Register this device's Expo push token",
    responses={
        200: {"description": "The caller had registered the token already.", "model": DeviceOut},
        **problem_responses(
            400,
            401,
            404,
            413,
            422,
            429,
            503,
            instance="/v1/me/devices",
            examples={404: _UNKNOWN_USER, 422: _INVALID_TOKEN},
        ),
    },
)
def post_device(
    device: DeviceIn,
    user_id: CurrentUserId,
    engine: EngineDep,
    redis_client: RedisDep,
    keys: KeysDep,
    response: Response,
) -> DeviceOut:
    """Idempotent: call it on every launch. A token another account had moves to the caller,
    and that account is told (a `device_moved` live event)."""
    try:
        registration = register_device(
            engine, user_id=user_id, token=device.expo_push_token, platform=device.platform
        )
    except UnknownUserError as error:
        raise HTTPException(404, f"User {user_id} does not exist.") from error
    if registration.moved_from is not None:
        log.info("push token moved from user %s to user %s", registration.moved_from, user_id)
        publish_device_moved(
            redis_client, keys, previous_owner=registration.moved_from, platform=device.platform
        )
    created = registration.created or registration.moved_from is not None
    if not created:
        response.status_code = 200
    return DeviceOut(
        expo_push_token=device.expo_push_token, platform=device.platform, created=created
    )


@router.delete(
    "/me/devices/{token}",
    status_code=204,
    summary="Unregister a push token (on logout)",
    responses=problem_responses(
        401,
        422,
        429,
        503,
        instance="/v1/me/devices/ExponentPushToken%5Bxxxxxxxxxxxxxxxxxxxxxx%5D",
        examples={
            422: {
                "Token too long": {
                    "detail": "path.token: String should have at most 256 characters",
                    "errors": [
                        {
                            "loc": ["path", "token"],
                            "field": "path.token",
                            "msg": "String should have at most 256 characters",
                            "type": "string_too_long",
                        }
                    ],
                }
            }
        },
    ),
)
def delete_device(
    token: Annotated[
        StoredText, Path(max_length=256, description="The Expo push token, URL-encoded.")
    ],
    user_id: CurrentUserId,
    engine: EngineDep,
) -> Response:
    """204 whether or not the caller had it: only the caller's own device can be removed."""
    unregister_device(engine, user_id=user_id, token=token)
    return Response(status_code=204)


@router.put(
    "/me/notification-preferences",
    response_model=PreferencesOut,
    summary="Set reminder lead time and quiet hours",
    responses=problem_responses(
        400,
        401,
        404,
        413,
        422,
        429,
        503,
        instance="/v1/me/notification-preferences",
        examples={404: _UNKNOWN_USER},
    ),
)
def put_notification_preferences(
    body: PreferencesIn, user_id: CurrentUserId, engine: EngineDep
) -> PreferencesOut:
    """Replaces the push preferences; notifications deferred by quiet hours go out afterwards."""
    try:
        saved = set_preferences(
            engine,
            user_id=user_id,
            preferences=Preferences(
                reminder_lead_minutes=body.reminder_lead_minutes,
                quiet_start=body.quiet_start,
                quiet_end=body.quiet_end,
                timezone=body.timezone,
            ),
        )
    except UnknownUserError as error:
        raise HTTPException(404, f"User {user_id} does not exist.") from error
    return PreferencesOut(
        reminder_lead_minutes=saved.reminder_lead_minutes,
        quiet_start=saved.quiet_start,
        quiet_end=saved.quiet_end,
        timezone=saved.timezone,
    )
