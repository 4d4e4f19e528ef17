"""Celery events: publishing (dispatcher), listening (receiver) and the pure cluster model (state)."""
