"""Reusable widgets: they render what they are given and never read the engine."""
