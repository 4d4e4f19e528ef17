"""What a Redis call can raise: one family, so callers catch ``RedisError`` for "the server or
the way to it failed" and the subclasses when they can act on the reason.

The names are redis-py's, which Celery users already catch around ``app.backend.client``."""

from __future__ import annotations


class RedisError(Exception):
    pass


class ConnectionError(RedisError):  # noqa: A001 - redis-py's name, which users already catch
    pass


class TimeoutError(RedisError):  # noqa: A001
    pass


class AuthenticationError(ConnectionError):
    pass


class BusyLoadingError(ConnectionError):
    """The server is loading its data set: retried as a lost connection would be."""


class MasterNotFoundError(ConnectionError):
    """No sentinel named a primary that answers as one."""


class ResponseError(RedisError):
    """The server refused a command (an ``-ERR ...`` reply)."""


class NoScriptError(ResponseError):
    pass


class ReadOnlyError(ResponseError):
    """A write reached a replica: after a failover, the connection is to the old primary."""


class WatchError(RedisError):
    """A watched key changed before ``EXEC``: the transaction did not run."""


class PubSubError(RedisError):
    pass


class DataError(RedisError):
    """A value the protocol cannot carry (``None``, a nested list)."""


# A refusal's first word → the class that says what to do about it (redis-py's mapping).
_BY_CODE: dict[str, type[RedisError]] = {
    "NOSCRIPT": NoScriptError,
    "READONLY": ReadOnlyError,
    "LOADING": BusyLoadingError,
    "NOAUTH": AuthenticationError,
    "WRONGPASS": AuthenticationError,
}
_AUTH_REFUSALS = ("Client sent AUTH, but no password is set", "invalid password", "invalid username-password pair")


def reply_error(text: str) -> RedisError:
    """The exception for an error reply's text, as the server sent it (``ERR ...``)."""
    code, _, rest = text.partition(" ")
    kind = _BY_CODE.get(code)
    if kind is not None:
        return kind(rest)
    if code != "ERR":
        return ResponseError(text)
    if rest.startswith("max number of clients reached"):
        return ConnectionError(rest)
    if rest.startswith(_AUTH_REFUSALS):
        return AuthenticationError(rest)
    return ResponseError(rest)
