"""Files a manager attaches in Kommo, served the way amojo serves them: a public URL on amojo's own host
(`https://amojo.kommo.com/attachments/…/<name>`, §9) that the chat hook's `media` field points to.

A test stores a file through `POST /_emulator/attachments?name=…&mime=…` (the body is the file, written
to disk as it arrives, so a 100 MB attachment costs no memory), gets its URL, and names it in a manager
message. `GET /attachments/<id>/<name>` streams it back with its Content-Type and Content-Length; a
deleted attachment answers 404 as an expired one would. Downloads pass through the emulator's middleware,
so they are recorded and faults (404, 500, a slow answer) can be injected on them by path.
"""

from __future__ import annotations

import hashlib
import mimetypes
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from libs.kommo.emulator.errors import NOT_FOUND, kommo_error_response

ATTACHMENTS_PATH: Final = "/attachments"
_NAME_MAX_LEN: Final = 255


@dataclass(frozen=True)
class Attachment:
    id: str
    file_name: str
    mime_type: str
    size: int
    sha256: str
    path: Path

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}{ATTACHMENTS_PATH}/{self.id}/{quote(self.file_name)}"

    def to_json(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url(base_url),
            "file_name": self.file_name,
            "file_size": self.size,
            "mime_type": self.mime_type,
            "sha256": self.sha256,
        }


class AttachmentStore:
    """Attachments on disk in a private temporary folder (removed with the store)."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="amojo-attachments-")
        self._lock = threading.Lock()
        self._items: dict[str, Attachment] = {}

    async def save(self, request: Request, file_name: str, mime_type: str) -> Attachment:
        """Write the request body to a file chunk by chunk, hashing as it goes."""
        attachment_id = uuid.uuid4().hex
        path = Path(self._dir.name) / attachment_id
        digest = hashlib.sha256()
        size = 0
        with path.open("wb") as handle:
            async for chunk in request.stream():
                digest.update(chunk)
                size += len(chunk)
                handle.write(chunk)
        attachment = Attachment(attachment_id, file_name, mime_type, size, digest.hexdigest(), path)
        with self._lock:
            self._items[attachment_id] = attachment
        return attachment

    def get(self, attachment_id: str) -> Attachment | None:
        with self._lock:
            return self._items.get(attachment_id)

    def delete(self, attachment_id: str) -> bool:
        with self._lock:
            attachment = self._items.pop(attachment_id, None)
        if attachment is None:
            return False
        attachment.path.unlink(missing_ok=True)
        return True

    def close(self) -> None:
        self._dir.cleanup()


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def attachment_routes(store: AttachmentStore) -> list[Route]:
    """The public download route and the `/_emulator/attachments` control routes."""

    async def upload(request: Request) -> Response:
        file_name = request.query_params.get("name", "")
        if not file_name or "/" in file_name or len(file_name) > _NAME_MAX_LEN:
            return JSONResponse({"error": f"name must be a file name of 1-{_NAME_MAX_LEN} characters"}, 400)
        mime_type = request.query_params.get("mime") or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        attachment = await store.save(request, file_name, mime_type)
        return JSONResponse(attachment.to_json(_base_url(request)), status_code=201)

    async def remove(request: Request) -> Response:
        if not store.delete(request.path_params["attachment_id"]):
            return JSONResponse({"error": "no such attachment"}, status_code=404)
        return JSONResponse({"deleted": True})

    async def download(request: Request) -> Response:
        attachment = store.get(request.path_params["attachment_id"])
        if attachment is None or request.path_params["name"] != attachment.file_name:
            return kommo_error_response(404, NOT_FOUND, "NOT_FOUND")
        return FileResponse(attachment.path, media_type=attachment.mime_type)

    return [
        Route("/_emulator/attachments", upload, methods=["POST"]),
        Route("/_emulator/attachments/{attachment_id}", remove, methods=["DELETE"]),
        Route(ATTACHMENTS_PATH + "/{attachment_id}/{name}", download, methods=["GET", "HEAD"]),
    ]
