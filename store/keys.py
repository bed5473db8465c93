"""Every Redis key Godo uses is built here, so the layout can be read in one place.

Layout (with the default prefix `godo`):

- `godo:feed:current` -> run id of the published run (the one pointer a publish flips)
- `godo:feed:run:{run_id}:user:{user_id}` -> JSON list of that user's feed items
- `godo:feed:run:{run_id}:fallback` -> JSON list of the cold-start items of that run
- `godo:feed:run:{run_id}:meta` -> hash: user count, published_at, and the run's experiment,
  arm and model version (empty for the champion's run when unknown); `published` is set
  just before the run's pointer flips, so a cursor can pin only a run that was published
- `godo:feed:arm:{experiment}:{arm}` -> run id of the run an experiment's arm serves: one
  pointer per arm, flipped like `feed:current` once that arm's run is complete
  (both pointers are a cache of Postgres, which decides the current run: `store.recovery`
  puts them back when Redis lost or disagrees with them)
- `godo:feed:restore-lock` -> a random token, held (SET NX PX) by the one API process that
  is restoring runs into Redis from Postgres, so a restart of Redis does not make every
  process rewrite the same run
- `godo:experiments:serving` -> JSON of the experiments that may serve (not stopped, not ended):
  name, salt, layer, traffic range, start and end, arms and weights. Written by
  `godo experiment create|stop` and every publish (`store.experiments`), read in the feed's
  one round trip, so assigning a user to an arm costs no Postgres query
- `godo:seen:{run_id}:{user_id}` -> set of event ids the user swiped since the run was published
- `godo:cards:epoch` -> counter bumped whenever the catalogue or activity is bulk-loaded
- `godo:cards:changes` -> stream of changed event ids (`e`), trimmed to ~100k entries
- `godo:cards:user:{user_id}:friends` -> counter bumped when the user's friendships change
- `godo:cards:user:{user_id}:friend-ids` -> JSON {epoch, version, ids}: the user's mutual
  friends as of that epoch and counter, shared by every API process
  (these keep the API's cached cards and friend lists exact: `store.live_cache`)
- `godo:live:user:{user_id}:events` -> stream of live events for one user (`friend_rsvp`...),
  trimmed to ~500 entries, expiring a week after its last event (`store.live_events`)
- `godo:live:broadcast` -> stream of live events for everyone (`feed_refreshed`), ~100 entries
- `{stream}:added` -> how many entries were ever added to that live stream (written in the same
  MULTI as each XADD, same TTL): Redis 7 reports it as `entries-added`, 6.2 does not, and a
  resuming client needs it to know whether entries after its position were trimmed
- `godo:live:notify` -> pub/sub channel: "these users' streams (or the broadcast) grew"
- `godo:impressions` -> stream of served feed pages, one entry per page (field `p`: JSON of
  user, served time, run, model version, experiment, arm, the page's uuid nonce and its
  items' event, rank and propensity), appended by the API with each page it serves and
  emptied by the `impression_log` asset: it deletes entries only after their rows are
  committed in Postgres, so the stream is never trimmed by length (that would drop
  impressions nobody had moved yet; `store.impressions`)

Run keys are versioned by run id and expire on their own, so a half-written run is never
reachable (the pointer still names the old one) and old runs need no clean-up job.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Key builders under one namespace `prefix` (tests use a unique prefix each)."""

    prefix: str = "godo"

    def current_run(self) -> str:
        return f"{self.prefix}:feed:current"

    def run_user_feed(self, run_id: str, user_id: int) -> str:
        return f"{self.prefix}:feed:run:{run_id}:user:{user_id}"

    def run_fallback(self, run_id: str) -> str:
        return f"{self.prefix}:feed:run:{run_id}:fallback"

    def run_meta(self, run_id: str) -> str:
        return f"{self.prefix}:feed:run:{run_id}:meta"

    def arm_run(self, experiment: str, arm: str) -> str:
        """The pointer to the run an experiment's arm serves (names hold no ':')."""
        return f"{self.prefix}:feed:arm:{experiment}:{arm}"

    def experiments(self) -> str:
        """The experiments that may serve, as one JSON document (`store.experiments`)."""
        return f"{self.prefix}:experiments:serving"

    def restore_lock(self) -> str:
        """Held by the process restoring runs from Postgres (`store.recovery`)."""
        return f"{self.prefix}:feed:restore-lock"

    def run_pattern(self, run_id: str) -> str:
        """Glob matching every key of one run (for inspection and tests, never hot paths)."""
        return f"{self.prefix}:feed:run:{run_id}:*"

    def seen(self, run_id: str, user_id: int) -> str:
        return f"{self.prefix}:seen:{run_id}:{user_id}"

    def calendar_version(self, user_id: int) -> str:
        """A counter bumped on every attendance change: part of each cached page's key."""
        return f"{self.prefix}:calendar:user:{user_id}:version"

    def calendar_page(self, user_id: int, version: int, tier: str, digest: str) -> str:
        """One cached calendar page: owner, version, what the viewer may see, query digest."""
        return f"{self.prefix}:calendar:user:{user_id}:v{version}:{tier}:{digest}"

    def card_epoch(self) -> str:
        return f"{self.prefix}:cards:epoch"

    def card_changes(self) -> str:
        return f"{self.prefix}:cards:changes"

    def friends_version(self, user_id: int) -> str:
        return f"{self.prefix}:cards:user:{user_id}:friends"

    def friend_ids(self, user_id: int) -> str:
        return f"{self.prefix}:cards:user:{user_id}:friend-ids"

    def namespace_pattern(self) -> str:
        return f"{self.prefix}:*"

    def live_user_stream(self, user_id: int) -> str:
        """One user's bounded stream of live events (what a reconnect replays from)."""
        return f"{self.prefix}:live:user:{user_id}:events"

    def live_broadcast_stream(self) -> str:
        """The bounded stream of live events every connected user receives."""
        return f"{self.prefix}:live:broadcast"

    def stream_added(self, stream: str) -> str:
        """Counter of every entry ever added to `stream` (one of the live streams above)."""
        return f"{stream}:added"

    def impressions(self) -> str:
        """The stream of served feed pages, waiting to be moved into Postgres."""
        return f"{self.prefix}:impressions"

    def live_notify_channel(self) -> str:
        """Pub/sub channel telling every API process which streams just grew."""
        return f"{self.prefix}:live:notify"
