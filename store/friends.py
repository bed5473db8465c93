"""Friends: requests, accepting them, removing friends, and a user's lists.

A friendship is two `friendships` rows, one per direction, and readers (calendar visibility,
"friends going") only count a pair as friends when both exist. So this module never writes one
row without the other: a pending ask lives in `friend_requests`, and accepting it deletes the
request and inserts both rows in the same transaction.

Every change to a pair runs under a transaction-scoped advisory lock on that pair. Without it
two crossing requests (A asks B while B asks A) could each miss the other's row and leave two
pending requests instead of a friendship; with it, the second waits, then sees the first's
committed row and accepts it. A second accept of the same request likewise waits, finds the
friendship, and succeeds (the inserts are ON CONFLICT DO NOTHING as well, so a pair already
half-written by older code is completed rather than failing).

Cached calendars are the caller's concern: after a change that made or ended a friendship,
both users' calendar versions must be bumped (`store.calendar.invalidate_calendar`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from store.errors import UnknownUserError
from store.schema import friend_requests, friendships, users

FriendState = Literal["requested", "friends"]

_ADVISORY_NAMESPACE = "godo:friends"
_LOCK_USERS = sa.text(
    "SELECT id FROM users WHERE id IN (:a, :b) ORDER BY id FOR KEY SHARE"
).bindparams(sa.bindparam("a", type_=sa.BigInteger), sa.bindparam("b", type_=sa.BigInteger))


class NoSuchRequestError(LookupError):
    """There is no pending request from `from_user_id` to `to_user_id` (and no friendship)."""

    def __init__(self, from_user_id: int, to_user_id: int) -> None:
        super().__init__(f"no friend request from {from_user_id} to {to_user_id}")
        self.from_user_id = from_user_id
        self.to_user_id = to_user_id


class SelfFriendError(ValueError):
    """A user cannot ask, accept or remove themselves (the tables' check constraints agree)."""


@dataclass(frozen=True)
class Outcome:
    """Where a pair stands after a call, and what the call changed.

    `created` is True when this call wrote the request or the friendship (so the API answers
    201 for a new request); `friendship_changed` when calendars must be invalidated.
    """

    state: FriendState
    created: bool
    friendship_changed: bool


@dataclass(frozen=True)
class Friend:
    user_id: int
    display_name: str
    since: datetime


@dataclass(frozen=True)
class PendingRequest:
    """A request as one side sees it: `user_id` is the other user."""

    user_id: int
    display_name: str
    requested_at: datetime


@dataclass(frozen=True)
class FriendLists:
    friends: list[Friend]
    incoming: list[PendingRequest]
    outgoing: list[PendingRequest]


def _pair_lock_key(a: int, b: int) -> int:
    """A signed 64-bit key for `pg_advisory_xact_lock`, the same for (a, b) and (b, a).

    Hashed with a namespace so it cannot coincide with another feature's keys by design; a
    chance collision only serialises two unrelated pairs for a moment.
    """
    low, high = sorted((a, b))
    digest = hashlib.sha256(f"{_ADVISORY_NAMESPACE}:{low}:{high}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_pair(conn: sa.Connection, a: int, b: int) -> set[int]:
    """Serialise changes to the pair; returns which of the two users exist (now locked).

    The users are locked FOR KEY SHARE so neither can be deleted before commit: the inserts
    below then never fail on a foreign key.
    """
    if a == b:
        raise SelfFriendError(f"user {a} cannot befriend themselves")
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_pair_lock_key(a, b))))
    return set(conn.execute(_LOCK_USERS, {"a": a, "b": b}).scalars())


def _are_friends(conn: sa.Connection, a: int, b: int) -> bool:
    """Both directed rows exist: the only thing that counts as a friendship."""
    count = conn.execute(
        sa.select(sa.func.count())
        .select_from(friendships)
        .where(
            sa.or_(
                sa.and_(friendships.c.user_id == a, friendships.c.friend_id == b),
                sa.and_(friendships.c.user_id == b, friendships.c.friend_id == a),
            )
        )
    ).scalar_one()
    return bool(count == 2)


def _delete_requests(conn: sa.Connection, a: int, b: int) -> int:
    """Drop pending requests between the pair, in both directions; how many there were."""
    result = conn.execute(
        sa.delete(friend_requests).where(
            sa.or_(
                sa.and_(friend_requests.c.from_user_id == a, friend_requests.c.to_user_id == b),
                sa.and_(friend_requests.c.from_user_id == b, friend_requests.c.to_user_id == a),
            )
        )
    )
    return result.rowcount


def _befriend(conn: sa.Connection, a: int, b: int) -> bool:
    """Both rows, and no request left over; True when a row was actually written."""
    _delete_requests(conn, a, b)
    # RETURNING, not rowcount: the driver does not report a row count for INSERT here.
    written = conn.execute(
        insert(friendships)
        .values([{"user_id": a, "friend_id": b}, {"user_id": b, "friend_id": a}])
        .on_conflict_do_nothing(index_elements=[friendships.c.user_id, friendships.c.friend_id])
        .returning(friendships.c.user_id)
    ).all()
    return bool(written)


def send_request(engine: sa.Engine, *, from_user_id: int, to_user_id: int) -> Outcome:
    """Ask `to_user_id` to be friends; accepts instead when they already asked the caller.

    Idempotent: asking again while pending, or asking a friend, changes nothing.
    `UnknownUserError` names whichever of the two has no row.
    """
    with engine.begin() as conn:
        existing = _lock_pair(conn, from_user_id, to_user_id)
        for user_id in (to_user_id, from_user_id):
            if user_id not in existing:
                raise UnknownUserError(user_id)
        if _are_friends(conn, from_user_id, to_user_id):
            return Outcome("friends", created=False, friendship_changed=False)
        reverse = conn.execute(
            sa.delete(friend_requests).where(
                friend_requests.c.from_user_id == to_user_id,
                friend_requests.c.to_user_id == from_user_id,
            )
        )
        if reverse.rowcount:
            changed = _befriend(conn, from_user_id, to_user_id)
            return Outcome("friends", created=changed, friendship_changed=changed)
        inserted = conn.execute(
            insert(friend_requests)
            .values(from_user_id=from_user_id, to_user_id=to_user_id)
            .on_conflict_do_nothing(
                index_elements=[friend_requests.c.from_user_id, friend_requests.c.to_user_id]
            )
            .returning(friend_requests.c.from_user_id)
        ).first()
    return Outcome("requested", created=inserted is not None, friendship_changed=False)


def accept_request(engine: sa.Engine, *, user_id: int, from_user_id: int) -> Outcome:
    """Accept `from_user_id`'s request to `user_id`: both friendship rows, request gone.

    Accepting again (a retry, or two devices at once) finds the friendship and succeeds without
    changes; with neither a request nor a friendship it is `NoSuchRequestError`.
    """
    with engine.begin() as conn:
        _lock_pair(conn, user_id, from_user_id)
        deleted = conn.execute(
            sa.delete(friend_requests).where(
                friend_requests.c.from_user_id == from_user_id,
                friend_requests.c.to_user_id == user_id,
            )
        )
        if deleted.rowcount:
            # A request implies both users exist (its foreign keys cascade), and the lock
            # keeps them until commit.
            changed = _befriend(conn, user_id, from_user_id)
            return Outcome("friends", created=changed, friendship_changed=changed)
        if _are_friends(conn, user_id, from_user_id):
            return Outcome("friends", created=False, friendship_changed=False)
    raise NoSuchRequestError(from_user_id, user_id)


def remove(engine: sa.Engine, *, user_id: int, other_user_id: int) -> bool:
    """End the friendship, or cancel/decline a pending request, whichever exists.

    Both directed rows go (a one-sided row left by older code too), and requests both ways.
    True when a friendship row was deleted, i.e. when calendars must be invalidated; a pair
    with nothing between them is not an error, so a retried DELETE is harmless.
    """
    with engine.begin() as conn:
        _lock_pair(conn, user_id, other_user_id)
        _delete_requests(conn, user_id, other_user_id)
        result = conn.execute(
            sa.delete(friendships).where(
                sa.or_(
                    sa.and_(
                        friendships.c.user_id == user_id,
                        friendships.c.friend_id == other_user_id,
                    ),
                    sa.and_(
                        friendships.c.user_id == other_user_id,
                        friendships.c.friend_id == user_id,
                    ),
                )
            )
        )
    return result.rowcount > 0


def friend_lists(engine: sa.Engine, user_id: int) -> FriendLists:
    """The user's mutual friends (by name) and pending requests both ways (newest first).

    Not paged: friend lists are small, and the app shows them whole. A one-sided
    `friendships` row is not listed, matching what it grants elsewhere (nothing).
    """
    mine, theirs = friendships.alias("mine"), friendships.alias("theirs")
    friends_query = (
        sa.select(users.c.id, users.c.display_name, mine.c.created_at)
        .select_from(
            mine.join(
                theirs,
                sa.and_(theirs.c.user_id == mine.c.friend_id, theirs.c.friend_id == mine.c.user_id),
            ).join(users, users.c.id == mine.c.friend_id)
        )
        .where(mine.c.user_id == user_id)
        .order_by(users.c.display_name, users.c.id)
    )
    incoming_query = (
        sa.select(users.c.id, users.c.display_name, friend_requests.c.created_at)
        .select_from(friend_requests.join(users, users.c.id == friend_requests.c.from_user_id))
        .where(friend_requests.c.to_user_id == user_id)
        .order_by(friend_requests.c.created_at.desc(), users.c.id)
    )
    outgoing_query = (
        sa.select(users.c.id, users.c.display_name, friend_requests.c.created_at)
        .select_from(friend_requests.join(users, users.c.id == friend_requests.c.to_user_id))
        .where(friend_requests.c.from_user_id == user_id)
        .order_by(friend_requests.c.created_at.desc(), users.c.id)
    )
    # One snapshot for the three lists, so a request accepted meanwhile is never in two.
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        friends = [Friend(*row) for row in conn.execute(friends_query)]
        incoming = [PendingRequest(*row) for row in conn.execute(incoming_query)]
        outgoing = [PendingRequest(*row) for row in conn.execute(outgoing_query)]
    return FriendLists(friends=friends, incoming=incoming, outgoing=outgoing)
