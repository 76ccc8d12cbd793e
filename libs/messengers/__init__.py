"""Messenger adapters: each platform's translation to and from the bridge's canonical events, plus its emulator."""
