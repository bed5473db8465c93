"""Invitation emails through Resend: the API's `store.invites.InvitationMailer`.

`store.invites.send_invite` decides when to send and records the outcome; this renders the
email (`sources.resend.messages.invitation`) and hands it to the provider client, turning
the provider's errors into the store's `EmailNotSentError`, so the store needs no provider.
"""

from __future__ import annotations

from dataclasses import dataclass

from sources.resend.client import EmailSender, ResendError
from sources.resend.messages import invitation
from store.invites import EmailNotSentError, NewInvite


@dataclass(frozen=True)
class ResendInvitations:
    """Invitations from `sender_address` through `client` (Resend or its local fake)."""

    client: EmailSender
    sender_address: str

    def send_invitation(self, invite: NewInvite, *, invite_url: str, idempotency_key: str) -> str:
        email = invitation(
            sender=self.sender_address,
            to=invite.email,
            inviter_name=invite.inviter_name,
            invite_url=invite_url,
            expires_at=invite.expires_at,
        )
        try:
            return self.client.send(email, idempotency_key=idempotency_key)
        except ResendError as error:
            raise EmailNotSentError(str(error)) from error
