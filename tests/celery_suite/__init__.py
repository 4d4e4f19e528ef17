"""Celery 5.7's own integration suite (``t/integration`` of the sdist) run against our engine.

See README.md here for the command, the modes and the latest counts.
"""
