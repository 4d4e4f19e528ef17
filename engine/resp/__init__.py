"""The engine's Redis client (see ``connection`` for why it is not redis-py)."""

from engine.resp.client import Client, Pipeline, Retry, Script
from engine.resp.connection import Connection, Settings
from engine.resp.errors import (
    AuthenticationError,
    BusyLoadingError,
    ConnectionError,
    DataError,
    MasterNotFoundError,
    NoScriptError,
    PubSubError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
    WatchError,
)
from engine.resp.pool import Pool
from engine.resp.pubsub import PubSub

__all__ = [
    "AuthenticationError",
    "BusyLoadingError",
    "Client",
    "Connection",
    "ConnectionError",
    "DataError",
    "MasterNotFoundError",
    "NoScriptError",
    "Pipeline",
    "Pool",
    "PubSub",
    "PubSubError",
    "ReadOnlyError",
    "RedisError",
    "ResponseError",
    "Retry",
    "Script",
    "Settings",
    "TimeoutError",
    "WatchError",
]
