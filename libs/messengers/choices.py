"""Choices (`content_pb2.Choices`) as plain text lines, for wherever a messenger cannot show them as
buttons: a link button beyond the one WhatsApp allows, buttons sent with a file. Nothing offered is lost;
the client reads it and can answer in words."""

from __future__ import annotations

from kommo_bridge.events.v1 import content_pb2


def button_line(button: content_pb2.Button) -> str:
    """`Site: https://…` for a link, the text alone for a reply button."""
    return f"{button.text}: {button.url}" if button.url else button.text


def choice_lines(choices: content_pb2.Choices) -> list[str]:
    """Every option, one per line: `• text` (links with their address), a list's rows numbered under their
    section titles."""
    if choices.HasField("list"):
        lines: list[str] = []
        number = 0
        for section in choices.list.sections:
            if section.title:
                lines.append(section.title)
            for row in section.rows:
                number += 1
                lines.append(f"{number}. {row.title}" + (f" – {row.description}" if row.description else ""))
        return lines
    return [f"• {button_line(b)}" for row in choices.buttons.rows for b in row.buttons]


def with_choice_lines(text: str, choices: content_pb2.Choices) -> str:
    """`text`, then the options as lines after a blank line."""
    lines = choice_lines(choices)
    return "\n".join([text, "", *lines]) if text and lines else text or "\n".join(lines)
