"""Alerts: messages, the persistent outbox and delivery through apprise."""
