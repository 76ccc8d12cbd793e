"""Telegram Bot API: the adapter (webhook parsing, Bot API client) and a faithful emulator of the API."""
