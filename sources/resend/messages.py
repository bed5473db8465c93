"""The emails Godo sends, rendered from the Jinja2 templates beside this module (`templates/`).

Every email has an HTML and a plain-text part (text-only clients, spam scoring, screen
readers). HTML is autoescaped, so a display name such as `<script>` is shown, not run; the
text templates are not (nothing interprets them). Links arrive here already signed: this
module only lays them out, and adds the RFC 2369 / RFC 8058 `List-Unsubscribe` headers to
bulk email (the digest), which Gmail and Yahoo require of bulk senders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jinja2

from sources.resend.client import Email

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    """(html, text) environments; one each, since autoescaping is per environment."""
    loader = jinja2.FileSystemLoader(TEMPLATES)
    html = jinja2.Environment(
        loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    text = jinja2.Environment(  # noqa: S701 - plain text, never interpreted as markup
        loader=loader,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return html, text


def _render(name: str, **context: object) -> tuple[str, str]:
    html_env, text_env = _environments()
    return (
        html_env.get_template(f"{name}.html").render(**context),
        text_env.get_template(f"{name}.txt").render(**context),
    )


def invitation(
    *, sender: str, to: str, inviter_name: str, invite_url: str, expires_at: datetime
) -> Email:
    """A friend invitation: who invites, the signed link, when it stops working.

    No List-Unsubscribe: it is a one-off message triggered by a person, not a subscription;
    the per-recipient daily cap (`store.invites`) is what protects the address.
    """
    html, text = _render(
        "invite", inviter_name=inviter_name, invite_url=invite_url, expires_at=expires_at
    )
    return Email(
        sender=sender,
        to=[to],
        subject=f"{inviter_name} invited you to Godo",
        html=html,
        text=text,
        tags={"category": "invite"},
    )


@dataclass(frozen=True)
class DigestEvent:
    """One line of the digest, already formatted for the reader."""

    name: str
    when: str
    venue: str | None = None
    friends_going: int = 0
    url: str | None = None


def weekly_digest(
    *,
    sender: str,
    to: str,
    display_name: str,
    events: Sequence[DigestEvent],
    unsubscribe_url: str,
) -> Email:
    """The weekly digest, with one-click unsubscribe (the link and the RFC 8058 headers).

    `unsubscribe_url` must accept both GET (a person clicking) and POST (the mail client's
    one-click, `List-Unsubscribe=One-Click` in the body): `POST /v1/email/unsubscribe` does.
    """
    html, text = _render(
        "digest", display_name=display_name, events=events, unsubscribe_url=unsubscribe_url
    )
    return Email(
        sender=sender,
        to=[to],
        subject="Your week on Godo",
        html=html,
        text=text,
        headers={
            "List-Unsubscribe": f"<{unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        tags={"category": "weekly_digest"},
    )
