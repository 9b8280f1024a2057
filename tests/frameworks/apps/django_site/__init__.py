"""A minimal Django project (admin, sessions, a streaming view, a Channels consumer)."""
