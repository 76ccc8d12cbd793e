"""Media in the WhatsApp emulator (reference/messenger-apis.md §2): files on disk behind media ids.

- Upload: `POST /{phone-number-id}/media`, multipart (`file`, `type`, `messaging_product=whatsapp`), parsed
  as it streams in and written to disk, so a 100 MB upload costs no memory. Sizes over WhatsApp's limits
  for the type are refused (131053), as are uploads without `messaging_product` or `type`.
- Download, two steps: `GET /{media-id}` answers `{url, mime_type, sha256, file_size, id}` where `url` is a
  lookaside URL signed for 5 minutes; a GET of that URL *with the Bearer token* serves the bytes. Without
  the token (or with another business's) it is refused; after 5 minutes it is gone (ask step 1 again).
- Media ids live 30 days (uploads) or 7 days (files clients sent).
- A message may name a `link` instead: the emulator fetches it after answering, as Meta does.
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final
from urllib.parse import urlencode

import httpx
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from libs.emulation.multipart_spool import FORM_ALLOWANCE, MultipartSpool, SpooledFile

MB: Final = 2**20
KB: Final = 2**10
LOOKASIDE_PATH: Final = "/whatsapp_business/attachments/"
LOOKASIDE_TTL_S: Final = 300
UPLOAD_TTL_S: Final = 30 * 24 * 3600
INBOUND_TTL_S: Final = 7 * 24 * 3600
_FETCH_CHUNK_BYTES: Final = 256 * 1024
_FETCH_TIMEOUT_S: Final = 30.0


UPLOAD_LIMIT: Final = 100 * MB
SIZE_LIMITS: Final = {"image": 5 * MB, "video": 16 * MB, "audio": 16 * MB, "sticker": 500 * KB, "document": 100 * MB}
"""What a message of each type may carry (reference §2); a media id holds any file up to 100 MB."""


class MediaRefused(Exception):
    """An upload or fetch WhatsApp refuses: 131053 with `details`, or `code` 100 for a malformed call."""

    def __init__(self, details: str, code: int = 131053) -> None:
        super().__init__(details)
        self.details = details
        self.code = code


@dataclass
class StoredMedia:
    id: str
    path: Path
    mime_type: str
    size: int
    sha256: str
    owner: str  # the phone number id it belongs to
    expires_at: float
    file_name: str = ""
    via: str = "upload"  # upload, link or client
    source_url: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mime_type": self.mime_type,
            "file_size": self.size,
            "sha256": self.sha256,
            "owner": self.owner,
            "file_name": self.file_name,
            "via": self.via,
            "source_url": self.source_url,
        }


class MediaStore:
    """Every file the emulator holds, by media id, and the lookaside URLs that serve them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._root = Path(tempfile.mkdtemp(prefix="whatsapp-emulator-media-"))
        self._key = secrets.token_bytes(32)
        self.items: dict[str, StoredMedia] = {}

    def _spool(self) -> Path:
        return self._root / secrets.token_hex(12)

    def _new_id(self) -> str:
        return str(secrets.randbelow(9 * 10**15) + 10**15)

    def get(self, media_id: str) -> StoredMedia | None:
        media = self.items.get(media_id)
        if media is None or media.expires_at <= self._clock():
            return None
        return media

    def put(self, data: bytes, mime_type: str, owner: str, *, file_name: str = "", via: str = "client") -> StoredMedia:
        """A file a client sends (or a test places): kept 7 days, like media of inbound messages."""
        path = self._spool()
        path.write_bytes(data)
        media = StoredMedia(
            self._new_id(),
            path,
            mime_type,
            len(data),
            hashlib.sha256(data).hexdigest(),
            owner,
            self._clock() + (INBOUND_TTL_S if via == "client" else UPLOAD_TTL_S),
            file_name,
            via,
        )
        self.items[media.id] = media
        return media

    async def receive_upload(self, request: Request, owner: str) -> StoredMedia:
        """Parse a multipart upload as it streams in; the stored file, or MediaRefused."""
        limit = UPLOAD_LIMIT
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit + FORM_ALLOWANCE:
            raise MediaRefused("File size exceeds the limit")
        _, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if not boundary:
            raise MediaRefused("the body must be multipart/form-data", code=100)
        reader = MultipartSpool(
            self._spool,
            file_limit=limit,
            file_too_large=lambda: MediaRefused("File size exceeds the limit for its type"),
            field_too_large=lambda: MediaRefused("a form field is too large", code=100),
            new_file=SpooledFile,
            max_files=1,
        )
        try:
            await reader.read(request, boundary)
        except (MultipartParseError, ClientDisconnect):
            raise MediaRefused("the multipart body cannot be parsed", code=100) from None
        try:
            return self._check_upload(reader, owner)
        except MediaRefused:
            reader.discard()
            raise

    def _check_upload(self, reader: MultipartSpool[SpooledFile], owner: str) -> StoredMedia:
        if reader.fields.get("messaging_product") != "whatsapp":
            raise MediaRefused("The parameter messaging_product is required.", code=100)
        mime_type = reader.fields.get("type", "")
        mime_type = mime_type.strip().lower() if isinstance(mime_type, str) else ""
        if not mime_type:
            raise MediaRefused("The parameter type is required.", code=100)
        if not reader.files:
            raise MediaRefused("The parameter file is required.", code=100)
        if "/" not in mime_type:
            raise MediaRefused(f"Param type must be a MIME type, got {mime_type!r}")
        file = reader.files[0]
        if file.size == 0:
            raise MediaRefused("The file is empty")
        media = StoredMedia(
            self._new_id(),
            file.path,
            mime_type,
            file.size,
            file.sha256,
            owner,
            self._clock() + UPLOAD_TTL_S,
            file.file_name,
            "upload",
        )
        self.items[media.id] = media
        return media

    async def fetch_link(
        self, http: httpx.AsyncClient, url: str, owner: str, expected: Callable[[str], bool], limit: int
    ) -> StoredMedia:
        """What Meta does with a `link`: download it (up to the type's limit) and keep it as a media id."""
        path = self._spool()
        digest = hashlib.sha256()
        size = 0
        try:
            async with http.stream("GET", url, timeout=_FETCH_TIMEOUT_S, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise MediaRefused(f"Downloading media from weblink failed with http code {response.status_code}")
                mime_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if not mime_type or mime_type == "application/octet-stream":
                    mime_type = mimetypes.guess_type(PurePosixPath(httpx.URL(url).path).name)[0] or mime_type
                if not expected(mime_type):
                    raise MediaRefused(f"Media type {mime_type or 'unknown'} is not supported for this message type")
                with path.open("wb") as handle:
                    async for chunk in response.aiter_bytes(_FETCH_CHUNK_BYTES):
                        size += len(chunk)
                        if size > limit:
                            raise MediaRefused(f"Media file size exceeds the {limit} bytes allowed for {mime_type}")
                        digest.update(chunk)
                        handle.write(chunk)
        except httpx.HTTPError as exc:
            path.unlink(missing_ok=True)
            raise MediaRefused(f"Downloading media from weblink failed ({type(exc).__name__})") from None
        except MediaRefused:
            path.unlink(missing_ok=True)
            raise
        name = PurePosixPath(httpx.URL(url).path).name
        media = StoredMedia(
            self._new_id(),
            path,
            mime_type,
            size,
            digest.hexdigest(),
            owner,
            self._clock() + UPLOAD_TTL_S,
            name,
            "link",
            url,
        )
        self.items[media.id] = media
        return media

    # -- lookaside URLs ---------------------------------------------------------------------------------

    def _sign(self, media_id: str, expires: int) -> str:
        return hmac.new(self._key, f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def lookaside_url(self, base_url: str, media: StoredMedia) -> str:
        expires = int(self._clock()) + LOOKASIDE_TTL_S
        query = urlencode({"mid": media.id, "ext": str(expires), "hash": self._sign(media.id, expires)})
        return f"{base_url.rstrip('/')}{LOOKASIDE_PATH}?{query}"

    def resolve(self, media_id: str, expires: str, signature: str) -> StoredMedia | None:
        """The file a lookaside URL names, while its signature holds and it has not expired."""
        if not expires.isdigit() or int(expires) <= self._clock():
            return None
        if not hmac.compare_digest(signature.encode(), self._sign(media_id, int(expires)).encode()):
            return None
        return self.get(media_id)

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
