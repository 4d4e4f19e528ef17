"""Celery's wire formats. Only this package knows their field names and quirks."""
