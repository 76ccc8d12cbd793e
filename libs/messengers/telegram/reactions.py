"""The reactions a Telegram bot may set, and how a manager's emoji becomes one of them.

Bots (like non-premium users) can set only the fixed `ReactionTypeEmoji` list of the Bot API, one per
message; anything else is refused with `REACTION_INVALID`. Kommo lets a manager pick any emoji, so a few
common ones are mapped to the nearest allowed one and the rest are not carried (the caller logs it).
"""

from __future__ import annotations

from typing import Final

VARIATION_SELECTOR: Final = "\ufe0f"
"""Emoji presentation selector: Kommo and keyboards add it (❤️), Telegram's list has none (❤)."""

ALLOWED: Final = frozenset(
    {
        "👍", "👎", "❤", "🔥", "🥰", "👏", "😁", "🤔", "🤯", "😱", "🤬", "😢", "🎉", "🤩", "🤮", "💩", "🙏",
        "👌", "🕊", "🤡", "🥱", "🥴", "😍", "🐳", "❤\u200d🔥", "🌚", "🌭", "💯", "🤣", "⚡", "🍌", "🏆", "💔",
        "🤨", "😐", "🍓", "🍾", "💋", "🖕", "😈", "😴", "😭", "🤓", "👻", "👨\u200d💻", "👀", "🎃", "🙈", "😇",
        "😨", "🤝", "✍", "🤗", "🫡", "🎅", "🎄", "☃", "💅", "🤪", "🗿", "🆒", "💘", "🙉", "🦄", "😘", "💊",
        "🙊", "😎", "👾", "🤷\u200d♂", "🤷", "🤷\u200d♀", "😡",
    }
)  # fmt: skip
"""`ReactionTypeEmoji.emoji` values the Bot API accepts (Bot API 10.1)."""

NEAREST: Final = {
    "😂": "🤣",
    "😆": "😁",
    "😀": "😁",
    "😃": "😁",
    "😄": "😁",
    "🙂": "😁",
    "😊": "🥰",
    "💕": "❤",
    "💖": "❤",
    "💗": "❤",
    "💓": "❤",
    "🧡": "❤",
    "💛": "❤",
    "💚": "❤",
    "💙": "❤",
    "💜": "❤",
    "😮": "😱",
    "😲": "😱",
    "😯": "😱",
    "😠": "😡",
    "😥": "😢",
    "😞": "😢",
    "👋": "🤝",
    "✅": "👌",
    "✔": "👌",
    "🙌": "👏",
    "🥳": "🎉",
    "🎊": "🎉",
}
"""Common emoji outside the list, each to the allowed one closest in meaning."""


def normalized(emoji: str) -> str:
    return emoji.replace(VARIATION_SELECTOR, "").strip()


def telegram_reaction(emoji: str) -> str | None:
    """The allowed reaction for a manager's emoji, or None when Telegram has nothing close to it."""
    plain = normalized(emoji)
    if plain in ALLOWED:
        return plain
    return NEAREST.get(plain)
