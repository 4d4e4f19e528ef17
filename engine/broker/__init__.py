"""Brokers: where task messages wait. ``connect(url)`` picks the implementation by scheme."""

from __future__ import annotations

from engine.broker.base import Broker, Delivery
from engine.broker.connect import connect

__all__ = ["Broker", "Delivery", "connect"]
