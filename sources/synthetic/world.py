"""A seeded synthetic city: metros, organizations, venues, events, users and their friendships.

Why it exists: every part of Godo (pipelines, models, the API) must run on a laptop without an
Eventbrite token or real users, and the models need a *known* ground truth to be evaluated
against. So the world carries, next to the public-looking tables, the hidden truth the
behaviour simulator draws from: each user's category taste, price sensitivity, distance scale
and weekend affinity, and each event's latent popularity. Nothing downstream should read the
hidden parts except evaluation code.

Users also carry ``onboarding_categories``: the categories they ticked at signup. It is public
(the app asks for it) but drawn from the hidden taste, the way a real user answers: mostly
their favourite categories, sometimes a slip, sometimes no answer at all. That is what makes
it a useful, but not perfect, cold-start signal.

Determinism: ``build_world`` depends only on the ``CityConfig`` (including ``now``). Each part
of the world draws from its own child of one ``numpy.random.SeedSequence``, so e.g. changing
``n_events`` does not reshuffle the users or their friendships.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from core.metros import DEFAULT_METROS, METROS, Metro

US_PER_SECOND = 1_000_000
US_PER_HOUR = 3_600 * US_PER_SECOND
US_PER_DAY = 24 * US_PER_HOUR

UTC_DATETIME = pl.Datetime("us", "UTC")


# --------------------------------------------------------------------------------------------
# Reference data: Eventbrite categories, subcategories and formats (metros: `core.metros`)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Category:
    """An Eventbrite top-level category (real ids, so the fake and the real API agree)."""

    id: str
    name: str
    short_name: str


CATEGORIES: tuple[Category, ...] = (
    Category("103", "Music", "Music"),
    Category("110", "Food & Drink", "Food & Drink"),
    Category("105", "Performing & Visual Arts", "Arts"),
    Category("108", "Sports & Fitness", "Sports & Fitness"),
    Category("102", "Science & Technology", "Science & Tech"),
    Category("113", "Community & Culture", "Community"),
    Category("104", "Film, Media & Entertainment", "Film & Media"),
    Category("107", "Health & Wellness", "Health"),
    Category("101", "Business & Professional", "Business"),
    Category("115", "Family & Education", "Family & Education"),
)
"""Column order of ``World.taste``: taste[:, i] is the taste for ``CATEGORIES[i]``."""

CATEGORY_INDEX: dict[str, int] = {c.id: i for i, c in enumerate(CATEGORIES)}

# How common each category is, both as a share of listings and as the population's prior taste.
_CATEGORY_WEIGHTS = np.array([0.18, 0.15, 0.10, 0.10, 0.08, 0.10, 0.07, 0.07, 0.06, 0.09])

# Onboarding answers: how many categories a user ticks, how often one tick is not among their
# true favourites (a misclick, or ticking what sounds good), and how many skip the question.
_ONBOARDING_PICKS = (2, 3)
_ONBOARDING_NOISE = 0.2
_ONBOARDING_SKIP = 0.15


@dataclass(frozen=True)
class Subcategory:
    """An Eventbrite subcategory; ``parent_id`` is its category id."""

    id: str
    name: str
    parent_id: str


SUBCATEGORIES: tuple[Subcategory, ...] = tuple(
    Subcategory(sid, name, parent)
    for parent, items in (
        ("103", (("3002", "Blues & Jazz"), ("3006", "EDM / Electronic"), ("3008", "Hip Hop / Rap"),
                 ("3009", "Indie"), ("3013", "Pop"), ("3017", "Rock"))),
        ("110", (("10001", "Beer"), ("10002", "Spirits"), ("10003", "Wine"), ("10004", "Food"))),
        ("105", (("5001", "Theatre"), ("5004", "Dance"), ("5007", "Craft"), ("5008", "Fine Art"),
                 ("5009", "Literary Arts"))),
        ("108", (("8001", "Running"), ("8003", "Cycling"), ("8004", "Mountain Biking"),
                 ("8010", "Climbing"))),
        ("102", (("2001", "Biotech"), ("2002", "High Tech"), ("2004", "Science"),
                 ("2005", "Robotics"))),
        ("113", (("13003", "City/Town"), ("13004", "LGBT"), ("13008", "Heritage"))),
        ("104", (("4001", "TV"), ("4002", "Film"), ("4004", "Gaming"), ("4007", "Comedy"))),
        ("107", (("7001", "Personal health"), ("7002", "Mental health"), ("7005", "Yoga"))),
        ("101", (("1001", "Startups & Small Business"), ("1002", "Finance"), ("1009", "Design"),
                 ("1010", "Career"))),
        ("115", (("15001", "Education"), ("15003", "Parenting"), ("15005", "Children & Youth"))),
    )
    for sid, name in items
)  # fmt: skip


@dataclass(frozen=True)
class EventFormat:
    """An Eventbrite event format (the 'type' of event: concert, class, networking, ...)."""

    id: str
    name: str
    short_name: str


FORMATS: tuple[EventFormat, ...] = (
    EventFormat("1", "Conference", "Conference"),
    EventFormat("2", "Seminar or Talk", "Seminar"),
    EventFormat("3", "Tradeshow, Consumer Show, or Expo", "Expo"),
    EventFormat("5", "Festival or Fair", "Festival"),
    EventFormat("6", "Concert or Performance", "Performance"),
    EventFormat("7", "Screening", "Screening"),
    EventFormat("8", "Dinner or Gala", "Gala"),
    EventFormat("9", "Class, Training, or Workshop", "Class"),
    EventFormat("10", "Meeting or Networking Event", "Networking"),
    EventFormat("11", "Party or Social Gathering", "Party"),
    EventFormat("13", "Tournament", "Tournament"),
    EventFormat("14", "Game or Competition", "Game"),
    EventFormat("15", "Race or Endurance Event", "Race"),
    EventFormat("16", "Tour", "Tour"),
    EventFormat("100", "Other", "Other"),
)

# Per category (in CATEGORIES order): plausible format ids, and listing habits that shape
# start times, durations, prices and venue sizes.
_CATEGORY_FORMATS: tuple[tuple[str, ...], ...] = (
    ("6", "6", "6", "11", "5"),
    ("8", "11", "9", "5", "16"),
    ("6", "6", "9", "5", "16"),
    ("9", "15", "13", "14"),
    ("10", "2", "1", "9", "3"),
    ("11", "5", "10", "2", "100"),
    ("7", "7", "6", "14"),
    ("9", "9", "2", "10"),
    ("10", "2", "1", "9"),
    ("9", "5", "16", "2"),
)
_P_EVENING = np.array([0.9, 0.6, 0.75, 0.3, 0.6, 0.45, 0.8, 0.35, 0.5, 0.15])
_DURATION_H = np.array([3.0, 2.5, 2.0, 1.5, 2.0, 2.5, 2.0, 1.25, 3.0, 2.0])
_P_FREE = np.array([0.2, 0.25, 0.3, 0.35, 0.45, 0.6, 0.3, 0.35, 0.3, 0.5])
_PRICE_USD = np.array([30.0, 45.0, 35.0, 25.0, 20.0, 15.0, 15.0, 25.0, 60.0, 15.0])
_VENUE_CAPACITY = np.array([400.0, 120.0, 250.0, 150.0, 200.0, 100.0, 180.0, 40.0, 300.0, 150.0])
# Mon..Sun (ISO weekday - 1): evenings at the end of the week are when most things happen.
_WEEKDAY_WEIGHTS = np.array([0.8, 0.9, 1.0, 1.2, 1.6, 1.8, 1.3])

_VENUE_KINDS: tuple[tuple[str, ...], ...] = (
    ("Music Hall", "Club", "Lounge", "Ballroom", "Amphitheater"),
    ("Kitchen", "Market Hall", "Brewing Co.", "Wine Bar", "Food Hall"),
    ("Theater", "Gallery", "Playhouse", "Arts Center"),
    ("Fitness Studio", "Athletic Club", "Climbing Gym", "Field"),
    ("Innovation Hub", "Coworking", "Labs", "Tech Campus"),
    ("Community Center", "Library", "Commons", "Civic Hall"),
    ("Cinema", "Screening Room", "Comedy Club"),
    ("Yoga Studio", "Wellness Center", "Meditation Loft"),
    ("Conference Center", "Hotel Ballroom", "Business Club"),
    ("Museum", "Learning Center", "Science Center", "Playground Pavilion"),
)
_VENUE_PREFIXES = (
    "Golden", "Blue Door", "Redwood", "Harbor", "Foundry", "Lantern", "Copper", "Union",
    "Juniper", "Old Mill", "Starlight", "Cedar", "Ferry", "Hillside", "Mosaic", "Northbeam",
    "Bayview", "Sunset", "Granite", "Orchard", "Ironworks", "Driftwood", "Magnolia", "Summit",
)  # fmt: skip
_STREETS = (
    "Main St", "Oak St", "Pine St", "Maple Ave", "Broadway", "Center St", "Park Ave", "Lake St",
    "Hill St", "Union St", "Washington St", "Lincoln Ave", "Grand Ave", "Telegraph Ave",
    "Mission St", "Market St", "1st St", "2nd St", "3rd St", "Valencia St", "Howard St",
)  # fmt: skip
_TITLE_A: tuple[tuple[str, ...], ...] = (
    ("Indie", "Jazz", "Soul", "Techno", "Acoustic", "Latin", "Synthwave", "Funk", "Folk"),
    ("Natural Wine", "Taco", "Dumpling", "Craft Beer", "Farm-to-Table", "Ramen", "Cocktail"),
    ("Improv", "Contemporary Dance", "Open Studio", "Poetry", "Shakespeare", "Sketch"),
    ("Sunrise", "Trail", "5K", "Bouldering", "Pickleball", "Cycling", "HIIT"),
    ("AI", "Robotics", "Open Source", "Data", "Climate Tech", "Quantum", "Web"),
    ("Neighborhood", "Lunar New Year", "Pride", "Makers", "Cultural", "Block"),
    ("Indie Film", "Documentary", "Anime", "Retro Gaming", "Stand-up", "Podcast"),
    ("Vinyasa", "Sound Bath", "Breathwork", "Mindfulness", "Pilates", "Meditation"),
    ("Founders", "Product", "Marketing", "Fintech", "Design Leaders", "Career"),
    ("Family", "STEM", "Storytime", "Kids Art", "Science", "Parents"),
)
_TITLE_B: tuple[tuple[str, ...], ...] = (
    ("Night", "Sessions", "Live", "Showcase", "Party", "Residency"),
    ("Pop-Up", "Tasting", "Festival", "Supper Club", "Night Market", "Crawl"),
    ("Night", "Showcase", "Opening", "Matinee", "Workshop", "Festival"),
    ("Club", "Meetup", "Challenge", "Clinic", "Run", "Session"),
    ("Meetup", "Summit", "Hack Night", "Talks", "Demo Day", "Workshop"),
    ("Fair", "Celebration", "Gathering", "Potluck", "Festival", "Social"),
    ("Screening", "Marathon", "Night", "Premiere", "Showcase"),
    ("Flow", "Session", "Retreat", "Workshop", "Circle"),
    ("Mixer", "Breakfast", "Summit", "Roundtable", "Happy Hour"),
    ("Day", "Workshop", "Fair", "Hour", "Camp", "Lab"),
)
_SUMMARIES = (
    "Live music and good company",
    "Eat, drink and meet your neighbours",
    "An evening for the arts",
    "Move, sweat and have fun",
    "Talks, demos and conversation about what's next",
    "Celebrate the community together",
    "A night at the movies and beyond",
    "Slow down and recharge",
    "Meet people who build things",
    "Learning and fun for all ages",
)
_ORG_SUFFIXES = (
    "Live", "Presents", "Events Co.", "Collective", "Social Club", "Arts Alliance",
    "Community Network", "Productions",
)  # fmt: skip
_FIRST_NAMES = (
    "Maya", "Leo", "Ava", "Noah", "Sofia", "Liam", "Isabella", "Ethan", "Mia", "Lucas", "Zoe",
    "Mateo", "Chloe", "Kai", "Priya", "Arjun", "Mei", "Hiro", "Amara", "Diego", "Nora", "Omar",
    "Grace", "Jin", "Elena", "Samir", "Hannah", "Theo", "Lina", "Malik", "Ruby", "Felix",
)  # fmt: skip
_LAST_INITIALS = tuple("ABCDEFGHIJKLMNOPRSTVWYZ")


def _default_now() -> datetime:
    """The current hour in UTC: a stable default within an hour, explicit ``now`` for tests."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class CityConfig:
    """Size and shape of a synthetic city. The world is a pure function of this value.

    ``now`` splits past from future: events that started before it are ended/completed,
    simulated app activity happens before it. Tests pass an explicit ``now`` so the world is
    reproducible; the default is the current hour.
    """

    seed: int = 7
    metros: tuple[str, ...] = DEFAULT_METROS
    n_venues: int = 300
    n_events: int = 4000
    n_users: int = 4000
    mean_friends: float = 8.0
    days_back: int = 45
    days_ahead: int = 60
    cancelled_share: float = 0.04
    future_share: float = 0.7
    now: datetime = field(default_factory=_default_now)

    def __post_init__(self) -> None:
        for name in ("n_venues", "n_events", "n_users", "days_back", "days_ahead"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"CityConfig.{name} must be a positive integer, got {value!r}")
        if not self.metros:
            raise ValueError("CityConfig.metros must name at least one metro")
        unknown = [m for m in self.metros if m not in METROS]
        if unknown:
            raise ValueError(f"unknown metro(s) {unknown}; known: {sorted(METROS)}")
        if len(set(self.metros)) != len(self.metros):
            raise ValueError(f"CityConfig.metros has duplicates: {self.metros}")
        if self.n_venues < len(self.metros):
            raise ValueError(
                f"CityConfig.n_venues ({self.n_venues}) must be at least the number of metros "
                f"({len(self.metros)}): every metro needs a venue"
            )
        if self.mean_friends < 0:
            raise ValueError(f"CityConfig.mean_friends must be >= 0, got {self.mean_friends}")
        if not 0.0 <= self.cancelled_share < 1.0:
            raise ValueError(
                f"CityConfig.cancelled_share must be in [0, 1): {self.cancelled_share}"
            )
        if not 0.0 <= self.future_share <= 1.0:
            raise ValueError(f"CityConfig.future_share must be in [0, 1]: {self.future_share}")
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("CityConfig.now must be timezone-aware (UTC)")
        # Normalise to UTC whole seconds so every derived timestamp is exactly representable
        # in the Eventbrite "2026-05-12T02:00:00Z" format and round-trips through JSON.
        object.__setattr__(self, "now", self.now.astimezone(UTC).replace(microsecond=0))

    @classmethod
    def tiny(cls, now: datetime | None = None, seed: int = 7) -> CityConfig:
        """A city small enough for unit tests (two metros in different timezones)."""
        return cls(
            seed=seed,
            metros=("san-francisco", "new-york"),
            n_venues=20,
            n_events=150,
            n_users=120,
            mean_friends=6.0,
            now=now if now is not None else _default_now(),
        )

    def replace(self, **changes: object) -> CityConfig:
        """A copy with some fields changed (``dataclasses.replace`` with validation)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class World:
    """A generated city: public-looking tables plus the hidden truth behaviour is drawn from.

    Public tables (what an app backend or Eventbrite would know): ``metros``,
    ``organizations``, ``venues``, ``events`` (minus ``popularity``), ``users`` (including
    ``onboarding_categories``, event ``category`` names), ``friendships``. Hidden truth (for
    the simulator and for evaluation only): ``taste`` (n_users x len(CATEGORIES), rows sum
    to 1, row i is user_id i + 1), ``user_traits`` and ``events["popularity"]``.
    ``events["status"]`` is the true status; see ``sources.synthetic.eventbrite_json`` for
    how listings can disagree with it.
    """

    config: CityConfig
    metros: pl.DataFrame
    organizations: pl.DataFrame
    venues: pl.DataFrame
    events: pl.DataFrame
    users: pl.DataFrame
    friendships: pl.DataFrame
    taste: np.ndarray
    user_traits: pl.DataFrame

    @cached_property
    def event_index(self) -> dict[str, int]:
        """event_id -> row number in ``events`` (rows never move: the frame is frozen)."""
        return {eid: i for i, eid in enumerate(self.events["event_id"].to_list())}

    def organizations_by_metro(self) -> dict[str, list[str]]:
        """metro -> organization ids: what a deployment following this city's organizers sets
        as `GODO_EVENTBRITE_ORGANIZATIONS` (the demo, `godo dagster` on the fake, the tests)."""
        followed: dict[str, list[str]] = {}
        for org, metro in self.organizations.select("organization_id", "metro").iter_rows():
            followed.setdefault(metro, []).append(org)
        return followed

    def user_index(self, user_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row numbers in ``users`` / ``taste`` for user ids (ids are 1..n_users)."""
        idx = np.asarray(user_ids, dtype=np.int64) - 1
        if idx.size and (idx.min() < 0 or idx.max() >= self.config.n_users):
            raise KeyError(f"user ids must be in 1..{self.config.n_users}")
        return idx


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _to_utc_series(name: str, micros: np.ndarray) -> pl.Series:
    return (
        pl.Series(name, micros.astype(np.int64)).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    )


def _allocate(total: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``weights`` (largest remainder)."""
    n = len(weights)
    base = np.full(n, minimum, dtype=np.int64)
    rest = total - base.sum()
    share = weights / weights.sum() * rest
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: rest - counts.sum()]] += 1
    return base + counts


def _unique_ids(rng: np.random.Generator, n: int, start: int, max_step: int) -> np.ndarray:
    """Unique, increasing, realistic-looking numeric ids (Eventbrite ids grow over time)."""
    return start + np.cumsum(rng.integers(1, max_step, size=n))


def _pick(rng: np.random.Generator, options: Sequence[str], size: int) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.integers(0, len(options), size=size)]


def _metro_frame(metros: Sequence[Metro]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "metro": [m.metro for m in metros],
            "name": [m.name for m in metros],
            "center_lat": [m.center_lat for m in metros],
            "center_lon": [m.center_lon for m in metros],
            "min_lat": [m.min_lat for m in metros],
            "max_lat": [m.max_lat for m in metros],
            "min_lon": [m.min_lon for m in metros],
            "max_lon": [m.max_lon for m in metros],
            "timezone": [m.timezone for m in metros],
        },
        schema={
            "metro": pl.Utf8,
            "name": pl.Utf8,
            "center_lat": pl.Float64,
            "center_lon": pl.Float64,
            "min_lat": pl.Float64,
            "max_lat": pl.Float64,
            "min_lon": pl.Float64,
            "max_lon": pl.Float64,
            "timezone": pl.Utf8,
        },
    )


def _organizations(
    rng: np.random.Generator, metros: Sequence[Metro], venues_per_metro: np.ndarray
) -> tuple[pl.DataFrame, np.ndarray]:
    """A few organizations per metro (more for bigger metros); returns frame and metro index."""
    # Never more organizations than venues: every organization owns at least one venue.
    per_metro = np.minimum(np.clip(venues_per_metro // 20, 2, len(_ORG_SUFFIXES)), venues_per_metro)
    metro_idx = np.repeat(np.arange(len(metros)), per_metro)
    names = [
        f"{metros[m].name} {_ORG_SUFFIXES[k]}"
        for m, count in enumerate(per_metro)
        for k in range(count)
    ]
    ids = _unique_ids(rng, len(metro_idx), 21_000_000_000, 5_000_000)
    frame = pl.DataFrame(
        {
            "organization_id": [str(i) for i in ids],
            "name": names,
            "metro": [metros[m].metro for m in metro_idx.tolist()],
        },
        schema={"organization_id": pl.Utf8, "name": pl.Utf8, "metro": pl.Utf8},
    )
    return frame, metro_idx


def _into_box(
    rng: np.random.Generator,
    lat: np.ndarray,
    lon: np.ndarray,
    metro_idx: np.ndarray,
    metros: Sequence[Metro],
) -> tuple[np.ndarray, np.ndarray]:
    """Redraw points that fell outside their metro's box uniformly inside its inner part.

    Clipping would pile points up on the box edges (in the ocean, for San Francisco).
    """
    lo_lat = np.array([m.min_lat for m in metros])[metro_idx]
    hi_lat = np.array([m.max_lat for m in metros])[metro_idx]
    lo_lon = np.array([m.min_lon for m in metros])[metro_idx]
    hi_lon = np.array([m.max_lon for m in metros])[metro_idx]
    out = (lat < lo_lat) | (lat > hi_lat) | (lon < lo_lon) | (lon > hi_lon)
    k = int(out.sum())
    lat, lon = lat.copy(), lon.copy()
    lat[out] = lo_lat[out] + (hi_lat - lo_lat)[out] * rng.uniform(0.2, 0.8, k)
    lon[out] = lo_lon[out] + (hi_lon - lo_lon)[out] * rng.uniform(0.2, 0.8, k)
    return lat, lon


def _venues(
    rng: np.random.Generator,
    metros: Sequence[Metro],
    venues_per_metro: np.ndarray,
    org_metro: np.ndarray,
    org_ids: Sequence[str],
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Venues clustered around a few hotspots per metro (downtown plus neighbourhoods).

    Returns the frame, each venue's metro index, primary category index and a latent
    'quality' that feeds event popularity (some venues draw crowds whatever they host).
    """
    n = int(venues_per_metro.sum())
    metro_idx = np.repeat(np.arange(len(metros)), venues_per_metro)
    # Hotspots: the metro center plus three random points in the middle of the bounding box.
    lat = np.empty(n)
    lon = np.empty(n)
    for m, metro in enumerate(metros):
        rows = np.flatnonzero(metro_idx == m)
        span_lat, span_lon = metro.max_lat - metro.min_lat, metro.max_lon - metro.min_lon
        hot_lat = np.r_[metro.center_lat, metro.min_lat + span_lat * rng.uniform(0.2, 0.8, 3)]
        hot_lon = np.r_[metro.center_lon, metro.min_lon + span_lon * rng.uniform(0.2, 0.8, 3)]
        which = rng.choice(4, size=rows.size, p=[0.4, 0.2, 0.2, 0.2])
        lat[rows] = hot_lat[which] + rng.normal(0, 0.008, rows.size)
        lon[rows] = hot_lon[which] + rng.normal(0, 0.010, rows.size)
    lat, lon = _into_box(rng, lat, lon, metro_idx, metros)

    category = rng.choice(len(CATEGORIES), size=n, p=_CATEGORY_WEIGHTS / _CATEGORY_WEIGHTS.sum())
    kinds = np.array(
        [
            _VENUE_KINDS[c][k % len(_VENUE_KINDS[c])]
            for c, k in zip(category, rng.integers(0, 99, n), strict=True)
        ]
    )
    names = [f"{p} {k}" for p, k in zip(_pick(rng, _VENUE_PREFIXES, n), kinds, strict=True)]
    capacity = np.maximum(
        20, np.round(np.exp(rng.normal(np.log(_VENUE_CAPACITY[category]), 0.6)))
    ).astype(np.int64)
    street_no = rng.integers(1, 3000, size=n)
    streets = _pick(rng, _STREETS, n)
    postal = np.array(
        [
            metros[m].postal_codes[k % len(metros[m].postal_codes)]
            for m, k in zip(metro_idx.tolist(), rng.integers(0, 99, n).tolist(), strict=True)
        ]
    )

    # Each venue belongs to one organization of its metro; the first venues of a metro are
    # spread round-robin so every organization owns at least one venue.
    org_of_venue = np.empty(n, dtype=np.int64)
    for m in range(len(metros)):
        rows = np.flatnonzero(metro_idx == m)
        orgs = np.flatnonzero(org_metro == m)
        size_weights = rng.pareto(1.5, orgs.size) + 1.0
        pick = rng.choice(orgs, size=rows.size, p=size_weights / size_weights.sum())
        head = min(rows.size, orgs.size)
        pick[:head] = orgs[:head]
        org_of_venue[rows] = pick
    quality = rng.normal(0.0, 1.0, n)
    ids = _unique_ids(rng, n, 150_000_000, 40_000)

    frame = pl.DataFrame(
        {
            "venue_id": [str(i) for i in ids],
            "name": names,
            "address_1": [f"{no} {st}" for no, st in zip(street_no, streets, strict=True)],
            "city": [metros[m].name for m in metro_idx.tolist()],
            "region": [metros[m].region for m in metro_idx.tolist()],
            "postal_code": postal.tolist(),
            "country": ["US"] * n,
            "metro": [metros[m].metro for m in metro_idx.tolist()],
            "latitude": np.round(lat, 6),
            "longitude": np.round(lon, 6),
            "capacity": capacity,
            "organization_id": [org_ids[o] for o in org_of_venue.tolist()],
        },
        schema={
            "venue_id": pl.Utf8,
            "name": pl.Utf8,
            "address_1": pl.Utf8,
            "city": pl.Utf8,
            "region": pl.Utf8,
            "postal_code": pl.Utf8,
            "country": pl.Utf8,
            "metro": pl.Utf8,
            "latitude": pl.Float64,
            "longitude": pl.Float64,
            "capacity": pl.Int64,
            "organization_id": pl.Utf8,
        },
    )
    return frame, metro_idx, category, quality


def _local_start_micros(
    rng: np.random.Generator,
    config: CityConfig,
    metro: Metro,
    category: np.ndarray,
) -> np.ndarray:
    """UTC start times (epoch microseconds) for events of one metro, drawn in local time.

    Dates favour Thursday-Sunday; evening slots (17:00-21:30) dominate for nightlife
    categories, daytime slots (09:00-16:30) for family, sports and wellness.
    """
    n = category.size
    if n == 0:
        return np.empty(0, dtype=np.int64)
    tz = ZoneInfo(metro.timezone)
    today = config.now.astimezone(tz).date()
    offsets = np.arange(-config.days_back, config.days_ahead)
    weekday = np.array([(today + timedelta(days=int(o))).weekday() for o in offsets])
    weights = _WEEKDAY_WEIGHTS[weekday]
    future = rng.random(n) < config.future_share
    day = np.empty(n, dtype=np.int64)
    for is_future in (True, False):
        rows = np.flatnonzero(future == is_future)
        pool = offsets >= 0 if is_future else offsets < 0
        p = weights[pool] / weights[pool].sum()
        day[rows] = rng.choice(offsets[pool], size=rows.size, p=p)
    evening = rng.random(n) < _P_EVENING[category]
    hour = np.where(evening, rng.integers(17, 22, n), rng.integers(9, 17, n))
    minute = np.where(rng.random(n) < 0.7, 0, 30)
    local = (
        np.datetime64(today, "us")
        + day.astype("timedelta64[D]")
        + hour.astype("timedelta64[h]")
        + minute.astype("timedelta64[m]")
    )
    utc = (
        pl.Series("t", local)
        .dt.replace_time_zone(metro.timezone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
        .to_numpy()
        .astype("datetime64[us]")
        .astype(np.int64)
    )
    return utc


def _events(
    rng: np.random.Generator,
    config: CityConfig,
    metros: Sequence[Metro],
    venues: pl.DataFrame,
    venue_metro: np.ndarray,
    venue_category: np.ndarray,
    venue_quality: np.ndarray,
    org_quality: dict[str, float],
) -> pl.DataFrame:
    n = config.n_events
    n_venues = venues.height
    # Some venues host far more events than others.
    activity = np.exp(rng.normal(0.0, 0.8, n_venues)) * np.array(
        [metros[m].weight for m in venue_metro]
    )
    venue = rng.choice(n_venues, size=n, p=activity / activity.sum())
    metro = venue_metro[venue]
    global_cat = rng.choice(len(CATEGORIES), size=n, p=_CATEGORY_WEIGHTS / _CATEGORY_WEIGHTS.sum())
    category = np.where(rng.random(n) < 0.55, venue_category[venue], global_cat)

    start = np.empty(n, dtype=np.int64)
    for m, metro_def in enumerate(metros):
        rows = np.flatnonzero(metro == m)
        start[rows] = _local_start_micros(rng, config, metro_def, category[rows])
    duration_h = _DURATION_H[category] * rng.uniform(0.75, 1.5, n)
    duration = (np.round(duration_h * 4) * 15 * 60 * US_PER_SECOND).astype(np.int64)
    end = start + np.maximum(duration, 30 * 60 * US_PER_SECOND)

    now = int(config.now.timestamp()) * US_PER_SECOND
    lead = rng.uniform(7, 60, n) * US_PER_DAY
    created = np.minimum(start - lead, now - rng.uniform(2, 72, n) * US_PER_HOUR)
    created = (created // US_PER_SECOND * US_PER_SECOND).astype(np.int64)
    published = created + rng.integers(0, 3_600, n) * US_PER_SECOND
    last_change = np.minimum(start, now)
    changed = published + (rng.random(n) * (last_change - published)).astype(np.int64)
    changed = np.maximum(published, changed // US_PER_SECOND * US_PER_SECOND)

    canceled = rng.random(n) < config.cancelled_share
    status = np.where(
        start > now,
        "live",
        np.where(end > now, "started", np.where(end > now - 3 * US_PER_DAY, "ended", "completed")),
    ).astype(object)
    status[canceled] = "canceled"

    is_free = rng.random(n) < _P_FREE[category]
    price_min = np.maximum(5.0, np.round(np.exp(rng.normal(np.log(_PRICE_USD[category]), 0.5))))
    tiers = rng.choice([1.0, 1.0, 1.5, 2.0, 3.0], size=n)
    price_min_cents = (price_min * 100).astype(np.int64)
    price_max_cents = (np.round(price_min * tiers) * 100).astype(np.int64)

    venue_capacity = venues["capacity"].to_numpy()[venue]
    capacity = np.maximum(10, np.round(venue_capacity * rng.uniform(0.3, 1.0, n))).astype(np.int64)

    venue_org = venues["organization_id"].to_numpy()[venue]
    org_q = np.array([org_quality[o] for o in venue_org])
    popularity = 0.5 * venue_quality[venue] + 0.35 * org_q + rng.normal(0.0, 0.8, n)
    popularity = (popularity - popularity.mean()) / (popularity.std() or 1.0)

    fmt = np.array(
        [
            _CATEGORY_FORMATS[c][k % len(_CATEGORY_FORMATS[c])]
            for c, k in zip(category, rng.integers(0, 99, n), strict=True)
        ]
    )
    subs_by_cat = [[s.id for s in SUBCATEGORIES if s.parent_id == c.id] for c in CATEGORIES]
    sub_pick = rng.integers(0, 99, n)
    has_sub = rng.random(n) < 0.7
    subcategory = [
        subs_by_cat[c][k % len(subs_by_cat[c])] if h else None
        for c, k, h in zip(category, sub_pick, has_sub, strict=True)
    ]
    a_idx = rng.integers(0, 99, n)
    b_idx = rng.integers(0, 99, n)
    venue_names = venues["name"].to_numpy()[venue]
    with_venue = rng.random(n) < 0.3
    names = [
        f"{_TITLE_A[c][a % len(_TITLE_A[c])]} {_TITLE_B[c][b % len(_TITLE_B[c])]}"
        + (f" at {vn}" if wv else "")
        for c, a, b, vn, wv in zip(category, a_idx, b_idx, venue_names, with_venue, strict=True)
    ]
    cities = venues["city"].to_numpy()[venue]
    summaries = [
        f"{_SUMMARIES[c]} at {vn} in {city}."
        for c, vn, city in zip(category, venue_names, cities, strict=True)
    ]

    # Eventbrite ids grow with creation time: assign increasing ids in creation order.
    ids = np.empty(n, dtype=np.int64)
    ids[np.argsort(created, kind="stable")] = _unique_ids(rng, n, 700_000_000_000, 200_000)
    cat_ids = [CATEGORIES[c].id for c in category]

    frame = pl.DataFrame(
        {
            "event_id": [str(i) for i in ids],
            "name": names,
            "summary": summaries,
            "venue_id": venues["venue_id"].to_numpy()[venue].tolist(),
            "organization_id": venue_org.tolist(),
            "metro": [metros[m].metro for m in metro.tolist()],
            "category_id": cat_ids,
            "category": [CATEGORIES[c].name for c in category],
            "subcategory_id": subcategory,
            "format_id": fmt.tolist(),
            "timezone": [metros[m].timezone for m in metro.tolist()],
            "is_free": is_free,
            "price_min_cents": price_min_cents,
            "price_max_cents": price_max_cents,
            "currency": ["USD"] * n,
            "capacity": capacity,
            "status": status.tolist(),
            "popularity": popularity,
        },
        schema_overrides={
            "price_min_cents": pl.Int64,
            "price_max_cents": pl.Int64,
            "subcategory_id": pl.Utf8,
        },
    ).with_columns(
        *(
            pl.when(pl.col("is_free")).then(None).otherwise(pl.col(c)).alias(c)
            for c in ("price_min_cents", "price_max_cents")
        ),
        _to_utc_series("start_utc", start),
        _to_utc_series("end_utc", end),
        _to_utc_series("created", created),
        _to_utc_series("published", published),
        _to_utc_series("changed", changed),
    )
    slug = (
        pl.col("name").str.to_lowercase().str.replace_all(r"[^a-z0-9]+", "-").str.strip_chars("-")
    )
    frame = frame.with_columns(
        pl.concat_str(
            [pl.lit("https://www.eventbrite.com/e/"), slug, pl.lit("-tickets-"), pl.col("event_id")]
        ).alias("url")
    )
    return frame.select(EVENT_COLUMNS).sort(["start_utc", "event_id"])


EVENT_COLUMNS: tuple[str, ...] = (
    "event_id", "name", "summary", "url", "venue_id", "organization_id", "metro", "category_id",
    "category", "subcategory_id", "format_id", "start_utc", "end_utc", "timezone", "is_free",
    "price_min_cents", "price_max_cents", "currency", "capacity", "status", "created",
    "published", "changed", "popularity",
)  # fmt: skip


def _users(
    rng: np.random.Generator, config: CityConfig, metros: Sequence[Metro]
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Users live near their metro's center; each belongs to a hidden ~40-person community.

    Communities drive both friendships and shared taste (homophily), which is what makes
    social features worth learning.
    """
    n = config.n_users
    weights = np.array([m.weight for m in metros])
    metro_idx = np.sort(rng.choice(len(metros), size=n, p=weights / weights.sum()))
    rng.shuffle(metro_idx)
    lat = np.empty(n)
    lon = np.empty(n)
    community = np.empty(n, dtype=np.int64)
    next_community = 0
    for m, metro in enumerate(metros):
        rows = np.flatnonzero(metro_idx == m)
        lat[rows] = rng.normal(metro.center_lat, (metro.max_lat - metro.min_lat) / 5, rows.size)
        lon[rows] = rng.normal(metro.center_lon, (metro.max_lon - metro.min_lon) / 5, rows.size)
        n_comm = max(1, round(rows.size / 40))
        community[rows] = next_community + rng.integers(0, n_comm, rows.size)
        next_community += n_comm
    lat, lon = _into_box(rng, lat, lon, metro_idx, metros)
    frame = pl.DataFrame(
        {
            "user_id": np.arange(1, n + 1, dtype=np.int64),
            "display_name": [
                f"{f} {s}."
                for f, s in zip(
                    _pick(rng, _FIRST_NAMES, n), _pick(rng, _LAST_INITIALS, n), strict=True
                )
            ],
            "metro": [metros[m].metro for m in metro_idx.tolist()],
            "home_lat": np.round(lat, 6),
            "home_lon": np.round(lon, 6),
        },
        schema={
            "user_id": pl.Int64,
            "display_name": pl.Utf8,
            "metro": pl.Utf8,
            "home_lat": pl.Float64,
            "home_lon": pl.Float64,
        },
    )
    return frame, metro_idx, community


def _taste(rng: np.random.Generator, community: np.ndarray) -> np.ndarray:
    """Peaked per-user category preferences, pulled toward the user's community's taste.

    Dirichlet draws via normalised Gamma variates so the whole matrix is one vectorised call.
    """
    base = _CATEGORY_WEIGHTS / _CATEGORY_WEIGHTS.sum()
    n_comm = int(community.max()) + 1 if community.size else 0
    centers = rng.gamma(np.broadcast_to(base * 4.0, (n_comm, base.size)))
    centers /= centers.sum(axis=1, keepdims=True)
    alpha = 3.0 * (0.6 * centers[community] + 0.4 * base)
    taste = rng.gamma(alpha) + 1e-9
    taste /= taste.sum(axis=1, keepdims=True)
    return taste


def _onboarding(rng: np.random.Generator, taste: np.ndarray) -> list[list[str]]:
    """The categories each user ticks at signup, as event ``category`` names.

    A user ticks their 2-3 highest-taste categories; with probability ``_ONBOARDING_NOISE``
    one tick is swapped for a random category they did not otherwise pick, and a share
    ``_ONBOARDING_SKIP`` skip the question (empty list). Ticks are listed in ``CATEGORIES``
    order, as a checkbox screen records them: the order says nothing about rank.
    """
    n, n_categories = taste.shape
    k = np.asarray(rng.integers(_ONBOARDING_PICKS[0], _ONBOARDING_PICKS[1] + 1, size=n))
    noisy = rng.random(n) < _ONBOARDING_NOISE
    swapped_slot = rng.integers(0, k, size=n)
    swap_keys = rng.random((n, n_categories))
    skip = rng.random(n) < _ONBOARDING_SKIP
    # ticked[i, c]: user i ticks category c. First their k[i] highest-taste categories.
    by_taste = np.argsort(-taste, axis=1, kind="stable")
    ticked = np.zeros((n, n_categories), dtype=bool)
    np.put_along_axis(ticked, by_taste, np.arange(n_categories) < k[:, None], axis=1)
    # A noisy answer swaps one tick for a random category the user did not already tick.
    rows = np.flatnonzero(noisy)
    added = np.argmax(np.where(ticked, -1.0, swap_keys), axis=1)
    ticked[rows, by_taste[rows, swapped_slot[rows]]] = False
    ticked[rows, added[rows]] = True
    ticked[skip] = False
    names = np.array([c.name for c in CATEGORIES], dtype=object)
    return [names[row].tolist() for row in ticked]


def _friendships(
    rng: np.random.Generator, config: CityConfig, metro_idx: np.ndarray, community: np.ndarray
) -> pl.DataFrame:
    """Symmetric, clustered friendships: ~65% within the community, ~25% within the metro.

    Edge endpoints are drawn in bulk; sociability (lognormal) gives some users many friends.
    Self-loops and repeated pairs are dropped, then both directions are emitted.
    """
    n = config.n_users
    schema = {"user_id": pl.Int64, "friend_id": pl.Int64}
    n_edges = int(round(n * config.mean_friends / 2 * 1.1))
    if n < 2 or n_edges == 0:
        return pl.DataFrame(schema=schema)
    sociability = np.exp(rng.normal(0.0, 0.6, n))
    u = rng.choice(n, size=n_edges, p=sociability / sociability.sum())
    mode = rng.random(n_edges)

    def pick_within(groups: np.ndarray, anchor: np.ndarray) -> np.ndarray:
        order = np.argsort(groups, kind="stable")
        sizes = np.bincount(groups)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        g = groups[anchor]
        offset = np.floor(rng.random(anchor.size) * sizes[g]).astype(np.int64)
        return order[starts[g] + offset]

    v = np.where(
        mode < 0.65,
        pick_within(community, u),
        np.where(mode < 0.9, pick_within(metro_idx, u), rng.integers(0, n, n_edges)),
    )
    keep = u != v
    a = np.minimum(u, v)[keep]
    b = np.maximum(u, v)[keep]
    pairs = np.unique(a * n + b)
    a, b = pairs // n, pairs % n
    frame = pl.DataFrame(
        {
            "user_id": np.concatenate([a, b]) + 1,
            "friend_id": np.concatenate([b, a]) + 1,
        },
        schema=schema,
    )
    return frame.sort(["user_id", "friend_id"])


def build_world(config: CityConfig) -> World:
    """Generate a whole city from ``config``; same config (incl. ``now``) -> identical world."""
    metros = [METROS[m] for m in config.metros]
    # A new part gets a new child appended at the end: the existing streams stay as they were.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(7)]
    rng_orgs, rng_venues, rng_events, rng_users, rng_taste, rng_friends, rng_onboard = streams

    weights = np.array([m.weight for m in metros])
    venues_per_metro = _allocate(config.n_venues, weights, minimum=1)
    organizations, org_metro = _organizations(rng_orgs, metros, venues_per_metro)
    org_ids = organizations["organization_id"].to_list()
    org_quality = dict(zip(org_ids, rng_orgs.normal(0.0, 1.0, len(org_ids)), strict=True))

    venues, venue_metro, venue_category, venue_quality = _venues(
        rng_venues, metros, venues_per_metro, org_metro, org_ids
    )
    events = _events(
        rng_events,
        config,
        metros,
        venues,
        venue_metro,
        venue_category,
        venue_quality,
        org_quality,
    )
    users, user_metro, community = _users(rng_users, config, metros)
    taste = _taste(rng_taste, community)
    users = users.with_columns(
        pl.Series("onboarding_categories", _onboarding(rng_onboard, taste), dtype=pl.List(pl.Utf8))
    )
    n = config.n_users
    user_traits = pl.DataFrame(
        {
            "user_id": np.arange(1, n + 1, dtype=np.int64),
            "price_sensitivity": np.exp(rng_taste.normal(np.log(0.6), 0.5, n)),
            "distance_km_scale": np.exp(rng_taste.normal(np.log(5.0), 0.4, n)),
            "weekend_affinity": rng_taste.normal(0.4, 0.5, n),
        },
        schema={
            "user_id": pl.Int64,
            "price_sensitivity": pl.Float64,
            "distance_km_scale": pl.Float64,
            "weekend_affinity": pl.Float64,
        },
    )
    friendships = _friendships(rng_friends, config, user_metro, community)
    return World(
        config=config,
        metros=_metro_frame(metros),
        organizations=organizations,
        venues=venues,
        events=events,
        users=users,
        friendships=friendships,
        taste=taste,
        user_traits=user_traits,
    )
