"""Kommo chat-channel ("amojo") integration: request signing, outgoing payloads, the signed client,
chat-webhook parsing, and a faithful amojo emulator for tests and sandbox mode.

Facts about the API come from `reference/kommo-chats-api.md`; section numbers in docstrings refer to it.
"""
