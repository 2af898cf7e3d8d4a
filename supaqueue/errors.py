"""The one root exception of the library and its kinds.

Every error a user can cause (bad config, unreachable database, an API refusal) is one of
these, with a message that names what to fix. `SupaqueueError` derives from `pulumi.RunError`
so that the Pulumi program prints the message alone, without a Python traceback.
"""

from __future__ import annotations

import pulumi


class SupaqueueError(pulumi.RunError):
    """Root of every error this library raises on purpose."""

    # The dynamic-provider plugin reports a failure as `traceback.format_exc()`, which prefixes
    # the class with its module unless that is `builtins`: "QueueNotEmptyError: cannot remove
    # queue ...", never "supaqueue.errors.QueueNotEmptyError: ..." (no Python path for users).
    __module__ = "builtins"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.__module__ = "builtins"


class ConfigError(SupaqueueError):
    """Stack config or component arguments are invalid."""


class DatabaseError(SupaqueueError):
    """The database refused a connection or a statement."""


class QueueNotEmptyError(DatabaseError):
    """A queue still holds unfinished jobs and may not be dropped (SQLSTATE SQ001)."""


class QueueExistsError(DatabaseError):
    """A queue's name is taken in the database by a queue this stack does not manage."""


class ManagementApiError(SupaqueueError):
    """The Supabase Management API answered with an error."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class NameTakenError(DatabaseError):
    """A trigger or schedule name is taken in the database by one this stack does not manage."""


class DestroyRefusedError(SupaqueueError):
    """A destroy that would take what others own or still need, or stop half-way: refused."""


class OwnershipError(SupaqueueError):
    """What another stack (or the user) owns would be changed or destroyed: refused."""
