"""`store.invites.send_invite`: record, send through the mailer, record the outcome.

Real Postgres, the real Resend client against the local fake (`sources.resend.fake`) behind
the API's mailer (`serving.invitations`). One mailer here is the test's own implementation
of the store's protocol, to look at the database while the email is being sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from core.settings import Settings
from serving.invitations import ResendInvitations
from sources.resend.client import ResendClient
from sources.resend.fake import DEFAULT_API_KEY, FakeResend
from store.invites import AlreadyInvitedError, InviteNotSentError, NewInvite, send_invite
from store.schema import invites, users

ANA = 1
SENDER = "Godo <no-reply@godo.example>"


@pytest.fixture
def mailer(resend: FakeResend) -> Iterator[ResendInvitations]:
    client = ResendClient(
        api_key=DEFAULT_API_KEY, base_url=resend.base_url, max_attempts=2, max_backoff_seconds=0.01
    )
    with client:
        yield ResendInvitations(client, SENDER)


@pytest.fixture
def ana(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        conn.execute(sa.insert(users).values(id=ANA, display_name="Ana", metro="lisbon"))
    return engine


def _rows(engine: sa.Engine) -> list[tuple[str, str | None, str | None]]:
    with engine.connect() as conn:
        return [
            (r.send_status, r.provider_message_id, r.send_detail)
            for r in conn.execute(sa.select(invites).order_by(invites.c.created_at))
        ]


@dataclass
class PeekingMailer:
    """Sends nothing; records what another connection sees of the invite during the send."""

    engine: sa.Engine
    seen: list[str | None] = field(default_factory=list)

    def send_invitation(self, invite: NewInvite, *, invite_url: str, idempotency_key: str) -> str:
        with self.engine.connect() as conn:
            self.seen.append(
                conn.execute(
                    sa.select(invites.c.send_status).where(invites.c.id == invite.id)
                ).scalar_one_or_none()
            )
        assert idempotency_key == f"godo-invite-{invite.id}" and "/v1/invites/" in invite_url
        return "msg-1"


def test_the_invite_is_committed_before_the_provider_is_called(
    ana: sa.Engine, api_settings: Settings
) -> None:
    peeking = PeekingMailer(ana)
    invite = send_invite(ana, api_settings, peeking, inviter_id=ANA, email="rui@example.com")
    assert peeking.seen == ["pending"]  # no transaction held open over the network
    assert _rows(ana) == [("sent", "msg-1", None)]
    assert invite.inviter_name == "Ana"


def test_a_provider_failure_is_recorded_and_does_not_block_inviting_again(
    ana: sa.Engine, api_settings: Settings, mailer: ResendInvitations, resend: FakeResend
) -> None:
    resend.server_errors(10)
    with pytest.raises(InviteNotSentError):
        send_invite(ana, api_settings, mailer, inviter_id=ANA, email="rui@example.com")
    ((status, message_id, detail),) = _rows(ana)
    assert (status, message_id) == ("failed", None) and detail and "500" in detail
    resend.reset()
    invite = send_invite(ana, api_settings, mailer, inviter_id=ANA, email="rui@example.com")
    assert [row[0] for row in _rows(ana)] == ["failed", "sent"]
    (message,) = resend.messages
    assert message.to == ["rui@example.com"] and message.body["from"] == SENDER
    assert message.headers["idempotency-key"] == f"godo-invite-{invite.id}"


def test_a_refused_invite_never_reaches_the_provider(
    ana: sa.Engine, api_settings: Settings, mailer: ResendInvitations, resend: FakeResend
) -> None:
    send_invite(ana, api_settings, mailer, inviter_id=ANA, email="rui@example.com")
    with pytest.raises(AlreadyInvitedError):
        send_invite(ana, api_settings, mailer, inviter_id=ANA, email="rui@example.com")
    assert resend.requests == 1 and len(_rows(ana)) == 1
