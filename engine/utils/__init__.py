"""Celery-shaped import paths (``celery.utils.log`` → ``engine.utils.log``) for code that moves over."""
