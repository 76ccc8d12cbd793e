"""A client's files on their way into Kommo: platform file references become signed links.

amojo downloads `message.media` from a public URL and requires `file_name` and `file_size` for files,
videos and pictures (kommo-chats-api §4). A client's content names its files by the platform's reference
(a Telegram file_id), so before the content is turned into an amojo message each file becomes a link
to the gateway (`libs.media.links`) carrying the exact name, MIME type and size. A file over what the
platform lets a bot download would only be a broken link: the manager gets a text instead, naming the
file and saying why it cannot be shown. Used for new messages and for edits alike.
"""

from __future__ import annotations

import mimetypes
from typing import Final

from kommo_bridge.events.v1 import content_pb2

from libs.config import Settings
from libs.errors import BadRequestError
from libs.media.links import LinkedFile, MediaLinks
from libs.messengers.registry import MediaLimits, adapter_for

# Extensions for the types messengers use most, so a default name never depends on the host's MIME table.
_EXTENSIONS: Final[dict[str, str]] = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "audio/ogg": ".ogg",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "application/pdf": ".pdf",
    "application/x-tgsticker": ".tgs",
}
_KIND_LABELS: Final[dict[int, str]] = {
    content_pb2.MEDIA_KIND_PICTURE: "picture",
    content_pb2.MEDIA_KIND_VIDEO: "video",
    content_pb2.MEDIA_KIND_FILE: "file",
    content_pb2.MEDIA_KIND_VOICE: "voice",
    content_pb2.MEDIA_KIND_AUDIO: "audio",
}


def default_file_name(label: str, mime_type: str) -> str:
    """A name for a file its platform gave none (Telegram photos, voice notes): `picture.jpg`."""
    extension = _EXTENSIONS.get(mime_type) or (mimetypes.guess_extension(mime_type) if mime_type else None)
    return f"{label}{extension or ''}"


def readable_size(size: int) -> str:
    """Bytes as a manager reads them: 512 B, 20 KB, 35.2 MB, 1.5 GB (powers of 1024, as the platforms)."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    return f"{value:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def too_large_text(file_name: str, size: int, limit: int, platform_label: str, caption: str = "") -> str:
    """What the manager reads instead of a file the bot may not download."""
    text = (
        f'[The client sent a file that is too large for the {platform_label} bot API to fetch: "{file_name}", '
        f"{readable_size(size)} (the limit is {readable_size(limit)}). Ask the client to send it another way.]"
    )
    return f"{text}\n{caption}" if caption else text


def _is_url(file_ref: str) -> bool:
    return file_ref.startswith(("https://", "http://"))


def link_content(
    content: content_pb2.Content,
    *,
    links: MediaLinks,
    connection_id: str,
    platform: int,
    limits: MediaLimits,
    platform_label: str,
) -> content_pb2.Content:
    """`content` with each platform file replaced by a signed link (and a name it can be shown under), or
    by a text when the file is over the platform's download limit. Other content comes back unchanged."""
    kind = content.WhichOneof("body")
    if kind == "media" and content.media.file_ref and not _is_url(content.media.file_ref):
        media = content.media
        name = media.file_name or default_file_name(_KIND_LABELS.get(media.kind, "file"), media.mime_type)
        limit = limits.download_bytes
        if limit is not None and media.size > limit:
            body = too_large_text(name, media.size, limit, platform_label, media.caption)
            return content_pb2.Content(text=content_pb2.Text(body=body))
        linked = content_pb2.Content()
        linked.CopyFrom(content)
        linked.media.file_name = name
        linked.media.file_ref = links.url(
            LinkedFile(connection_id, platform, media.file_ref, name, media.mime_type, media.size)
        )
        return linked
    if kind == "sticker" and content.sticker.file_ref and not _is_url(content.sticker.file_ref):
        sticker = content.sticker
        limit = limits.download_bytes
        if limit is not None and sticker.size > limit:
            # No sticker is this big; if one were, the emoji it stands for still says something.
            return content_pb2.Content(text=content_pb2.Text(body=sticker.emoji or "[sticker]"))
        name = default_file_name("sticker", sticker.mime_type)
        linked = content_pb2.Content()
        linked.CopyFrom(content)
        linked.sticker.file_ref = links.url(
            LinkedFile(connection_id, platform, sticker.file_ref, name, sticker.mime_type, sticker.size)
        )
        return linked
    return content


class InboundMedia:
    """`link_content` with each platform's limits as configured: what kommo_sender applies to a client's
    content (new messages and edits) before it becomes an amojo message."""

    def __init__(self, links: MediaLinks, settings: Settings) -> None:
        self._links = links
        self._settings = settings

    def link(self, content: content_pb2.Content, connection_id: str, platform: int) -> content_pb2.Content:
        kind = content.WhichOneof("body")
        if kind not in ("media", "sticker"):
            return content
        if not connection_id:
            raise BadRequestError("a client's file cannot be linked without the connection it came through")
        adapter = adapter_for(platform)
        return link_content(
            content,
            links=self._links,
            connection_id=connection_id,
            platform=platform,
            limits=adapter.media_limits(self._settings),
            platform_label=adapter.name.capitalize(),
        )
