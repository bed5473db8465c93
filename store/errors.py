"""Errors more than one store module raises, defined once so a router maps one type."""


class UnknownUserError(LookupError):
    """The user has no row in `users` (an id nobody has, or an account since deleted)."""

    def __init__(self, user_id: int) -> None:
        super().__init__(f"no user {user_id}")
        self.user_id = user_id
