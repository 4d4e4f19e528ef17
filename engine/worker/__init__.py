"""The worker role: fetch messages, run them in a pool, settle them with the broker."""
