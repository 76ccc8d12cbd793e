"""A manager's file on its way from Kommo to a messenger: what the hook said about it, and whether the
messenger's servers can fetch it by URL themselves.

Every messenger package sends these the same way (by URL when its servers reach Kommo's, else streamed
through, see libs.media.attachments); only the method or message type it picks is its own.
"""

from __future__ import annotations

import ipaddress
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import unquote, urlsplit

from kommo_bridge.events.v1 import content_pb2

from libs import status_texts
from libs.errors import BadRequestError, PermanentError

_KIND_NAMES: Final = {
    content_pb2.MEDIA_KIND_PICTURE: "picture",
    content_pb2.MEDIA_KIND_VIDEO: "video",
    content_pb2.MEDIA_KIND_FILE: "file",
    content_pb2.MEDIA_KIND_VOICE: "voice",
    content_pb2.MEDIA_KIND_AUDIO: "audio",
}
_PUBLIC_SUFFIX_EXCLUSIONS: Final = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def mime_type_of(name: str, extra_types: Mapping[str, str]) -> str:
    """The MIME type a file name suggests: the platform's own `extra_types` by extension first (types the
    system table may lack), then the system's; "" when neither knows it."""
    extension = PurePosixPath(name).suffix.lower()
    return extra_types.get(extension) or mimetypes.guess_type(name)[0] or ""


def name_in_url(url: str) -> str:
    """The file name a URL's path ends in ("" for none)."""
    return PurePosixPath(unquote(urlsplit(url).path)).name


@dataclass(frozen=True)
class OutboundFile:
    """A Kommo attachment on its way to a messenger: what the hook said about it (size 0: not said)."""

    kind: str  # the canonical kind: picture, video, file, voice, audio, sticker
    url: str
    file_name: str
    size: int
    mime_type: str
    caption: str

    @classmethod
    def from_content(cls, content: content_pb2.Content, platform: str) -> OutboundFile:
        """The file of a Media or Sticker content; PermanentError when there is no file to send."""
        which = content.WhichOneof("body")
        if which == "sticker":
            sticker = content.sticker
            if not sticker.file_ref.startswith(("http://", "https://")):
                # A Kommo sticker_id names a sticker of Kommo's own sets: there is no file to send.
                raise PermanentError(
                    f"{platform}: a Kommo sticker without a file URL (a sticker_id) cannot be sent",
                    reason=status_texts.TYPE_UNSUPPORTED,
                    reason_args={"type": "sticker", "platform": platform},
                )
            name = name_in_url(sticker.file_ref) or "sticker.webp"
            return cls("sticker", sticker.file_ref, name, max(0, sticker.size), sticker.mime_type, "")
        if which != "media":
            raise BadRequestError(f"{platform}: {which} is not a file")
        media = content.media
        kind = _KIND_NAMES.get(media.kind, "file")
        extension = mimetypes.guess_extension(media.mime_type) if media.mime_type else None
        name = media.file_name or name_in_url(media.file_ref) or f"{kind}{extension or ''}"
        if not media.file_ref.startswith(("http://", "https://")):
            raise PermanentError(
                f"{platform}: the {kind} {name!r} has no URL to fetch it from",
                reason=status_texts.FILE_UNAVAILABLE,
                reason_args={"name": name},
            )
        return cls(kind, media.file_ref, name, max(0, media.size), media.mime_type, media.caption)

    def guessed_mime_type(self, extra_types: Mapping[str, str]) -> str:
        """The type the hook gave, else the one the file name suggests."""
        return self.mime_type or mime_type_of(self.file_name, extra_types)


def _is_public_host(host: str) -> bool:
    """Whether the internet can reach `host`: a global IP address or a dotted public name."""
    host = host.strip("[]").lower()
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        pass
    return "." in host and not host.endswith(_PUBLIC_SUFFIX_EXCLUSIONS)


def platform_can_fetch(url: str, api_base_url: str) -> bool:
    """A platform fetches a URL from its own servers on the internet, so a file on a private or loopback
    host is out of its reach, unless the platform's API is itself local (a self-hosted server, an
    emulator) and so shares that network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    return _is_public_host(parts.hostname) or not _is_public_host(urlsplit(api_base_url).hostname or "")
