"""The Graph API client for one WhatsApp business number (reference/messenger-apis.md §2).

A connection's credential names three things: the business phone number (`phone_number_id`, the sender of
every message), its WhatsApp Business Account (`waba_id`, which owns templates and webhook subscriptions)
and a system-user access token. The bridge keeps them as one secret, `<phone_number_id>:<waba_id>:<token>`,
public ids before the secret as in a Telegram bot token. The token travels only in the Authorization
header: no URL, error, log line or repr made here contains it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from libs.errors import CredentialRejectedError, PermanentError, RateLimitedError
from libs.media.multipart import MultipartBody
from libs.messengers.whatsapp.graph_errors import failure
from libs.messengers.whatsapp.pacing import SendPacing

# How long a call carrying a file may take to be answered once sent (Graph answers an upload once stored).
UPLOAD_ANSWER_TIMEOUT_S: Final = 120.0
TEMPLATE_PAGE_SIZE: Final = 100
# Pages of templates read at most (a WABA holds a few hundred templates at most; a loop in `paging` must
# not spin forever).
MAX_TEMPLATE_PAGES: Final = 100
_ID_RE: Final = re.compile(r"^\d{1,30}$")


@dataclass(frozen=True)
class CloudCredentials:
    """What a WhatsApp connection holds: its number, its business account and the access token."""

    phone_number_id: str
    waba_id: str
    access_token: str

    @classmethod
    def parse(cls, secret: str) -> CloudCredentials:
        """From the stored form; CredentialRejectedError (without echoing it) when it is not one."""
        phone_number_id, _, rest = secret.strip().partition(":")
        waba_id, _, token = rest.partition(":")
        ids_ok = bool(_ID_RE.match(phone_number_id) and _ID_RE.match(waba_id))
        if not ids_ok or not token or any(c.isspace() for c in token):
            raise CredentialRejectedError(
                "whatsapp: the credential must be <phone number id>:<business account id>:<access token>"
            )
        return cls(phone_number_id, waba_id, token)

    def encode(self) -> str:
        return f"{self.phone_number_id}:{self.waba_id}:{self.access_token}"

    def __repr__(self) -> str:
        return f"CloudCredentials(phone_number_id={self.phone_number_id!r}, waba_id={self.waba_id!r})"


def recipient_field(chat_id: str) -> tuple[str, str]:
    """Whom a message goes to: a phone number (`wa_id`, digits) in `to`, a business-scoped user id
    (`US.1349...`, for users who hide their number behind a username) in `recipient`."""
    return ("to", chat_id) if chat_id.isdigit() else ("recipient", chat_id)


@dataclass(frozen=True)
class MediaInfo:
    """`GET /{media-id}`: where to download the file (a lookaside URL valid for 5 minutes) and what it is."""

    media_id: str
    url: str
    mime_type: str
    file_size: int | None
    sha256: str


class GraphClient:
    """Calls Graph for one number. `http` is shared and owned by the caller (timeouts, pooling)."""

    def __init__(
        self, base_url: str, credentials: CloudCredentials, http: httpx.AsyncClient, pacing: SendPacing | None = None
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self.credentials = credentials
        self._http = http
        self._pacing = pacing  # messenger_sender's: each message waits for its turn in the number's limits

    def __repr__(self) -> str:
        return f"GraphClient(base_url={self._base_url!r}, phone_number_id={self.credentials.phone_number_id!r})"

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials.access_token}"}

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        content: AsyncIterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        slow: bool = False,
    ) -> dict[str, Any]:
        """One Graph call; its JSON object, or the error `graph_errors.failure` makes of the answer."""
        base = self._http.timeout
        timeout = (
            httpx.Timeout(
                base.connect, read=max(base.read or 0, UPLOAD_ANSWER_TIMEOUT_S), write=base.write, pool=base.pool
            )
            if slow
            else base
        )
        outcome: httpx.Response | Exception
        try:
            outcome = await self._http.request(
                method,
                f"{self._base_url}/{path.lstrip('/')}",
                json=json,
                params=params,
                content=content,
                headers={**self.auth_header, **(headers or {})},
                timeout=timeout,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            outcome = exc  # raised below, outside the handler: the httpx error is not chained
        if isinstance(outcome, httpx.Response) and outcome.is_success:
            try:
                data: object = outcome.json()
            except ValueError:
                data = None
            if isinstance(data, dict):
                return data
            raise PermanentError(f"whatsapp {operation}: Graph answered something that is not a JSON object")
        raise failure(operation, outcome, self.credentials.access_token)

    # -- the number and its account -------------------------------------------------------------------

    async def phone_number(self, fields: tuple[str, ...] = ("display_phone_number", "verified_name")) -> dict[str, Any]:
        phone_number_id = self.credentials.phone_number_id
        return await self.call("phone number", "GET", phone_number_id, params={"fields": ",".join(fields)})

    async def account_phone_numbers(self) -> list[dict[str, Any]]:
        """The numbers of the business account (`GET /{waba-id}/phone_numbers`)."""
        data = await self.call("phone numbers", "GET", f"{self.credentials.waba_id}/phone_numbers")
        numbers = data.get("data")
        return [n for n in numbers if isinstance(n, dict)] if isinstance(numbers, list) else []

    async def subscribe_app(self) -> None:
        """Subscribe the app to the business account's webhooks (`POST /{waba-id}/subscribed_apps`)."""
        await self.call("subscribe app", "POST", f"{self.credentials.waba_id}/subscribed_apps")

    async def set_callback(self, url: str, verify_token: str) -> None:
        """Send this number's webhooks to `url` (a phone-number webhook override). Meta checks the URL at once
        with the GET handshake and `verify_token`, and refuses the override when that fails."""
        body = {"webhook_configuration": {"override_callback_uri": url, "verify_token": verify_token}}
        await self.call("set webhook", "POST", self.credentials.phone_number_id, json=body)

    async def webhook_configuration(self) -> dict[str, Any]:
        """Where this number's webhooks go: `{phone_number?, whatsapp_business_account?, application?}`."""
        data = await self.phone_number(("webhook_configuration",))
        configuration = data.get("webhook_configuration")
        return configuration if isinstance(configuration, dict) else {}

    # -- messages -------------------------------------------------------------------------------------

    async def send(self, payload: Mapping[str, Any], operation: str = "send") -> str:
        """POST /{phone-number-id}/messages; returns the message's id (`wamid.…`). Accepted is not delivered:
        a `failed` status may still follow (e.g. 131047 outside the 24-hour window)."""
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", **payload}
        phone_number_id, client = self.credentials.phone_number_id, str(payload.get("to") or payload.get("recipient"))
        if self._pacing is not None:
            await self._pacing.before_send(phone_number_id, client)
        try:
            data = await self.call(operation, "POST", f"{phone_number_id}/messages", json=body)
        except RateLimitedError as exc:
            if self._pacing is not None:
                await self._pacing.refused(phone_number_id, client, exc)
            raise
        messages = data.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        wamid = first.get("id") if isinstance(first, dict) else None
        if not isinstance(wamid, str) or not wamid:
            raise PermanentError(f"whatsapp {operation}: the answer carries no message id")
        return wamid

    async def mark_read(self, message_id: str) -> None:
        """Show the client's message (and every earlier one) as read: blue ticks."""
        body = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
        await self.call("mark read", "POST", f"{self.credentials.phone_number_id}/messages", json=body)

    async def typing(self, message_id: str) -> None:
        """Mark the client's message `message_id` read and show "typing…" (up to 25 s, or until the reply)."""
        body = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
            "typing_indicator": {"type": "text"},
        }
        await self.call("typing", "POST", f"{self.credentials.phone_number_id}/messages", json=body)

    # -- media ----------------------------------------------------------------------------------------

    async def media_info(self, media_id: str) -> MediaInfo:
        if not _ID_RE.match(media_id):
            raise PermanentError(f"whatsapp media: {media_id!r} is not a media id")
        data = await self.call("media", "GET", media_id)
        url, size = data.get("url"), data.get("file_size")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise PermanentError("whatsapp media: the answer carries no download URL")
        return MediaInfo(
            media_id=media_id,
            url=url,
            mime_type=str(data.get("mime_type") or ""),
            file_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            sha256=str(data.get("sha256") or ""),
        )

    async def upload(self, file_name: str, mime_type: str, size: int | None, chunks: AsyncIterable[bytes]) -> str:
        """POST /{phone-number-id}/media as multipart/form-data, the file streamed; returns the media id
        (valid 30 days). `size` (when known) makes the request's Content-Length, else it goes chunked."""
        body = MultipartBody([("messaging_product", "whatsapp"), ("type", mime_type)], "file", file_name, mime_type)
        headers = {"Content-Type": body.content_type}
        if size is not None:
            headers["Content-Length"] = str(body.content_length(size))
        data = await self.call(
            "media upload",
            "POST",
            f"{self.credentials.phone_number_id}/media",
            content=body.stream(chunks),
            headers=headers,
            slow=True,
        )
        media_id = data.get("id")
        if not isinstance(media_id, str) or not media_id:
            raise PermanentError("whatsapp media upload: the answer carries no media id")
        return media_id

    # -- templates ------------------------------------------------------------------------------------

    async def templates(
        self,
        fields: tuple[str, ...] = (
            "id",
            "name",
            "status",
            "category",
            "language",
            "components",
            "parameter_format",
            "rejected_reason",
        ),
        status: str = "",
    ) -> list[dict[str, Any]]:
        """Every template of the business account (`GET /{waba-id}/message_templates`), page after page."""
        params = {"fields": ",".join(fields), "limit": str(TEMPLATE_PAGE_SIZE)}
        if status:
            params["status"] = status
        found: list[dict[str, Any]] = []
        for _ in range(MAX_TEMPLATE_PAGES):
            data = await self.call("templates", "GET", f"{self.credentials.waba_id}/message_templates", params=params)
            page = data.get("data")
            if isinstance(page, list):
                found.extend(t for t in page if isinstance(t, dict))
            paging = data.get("paging")
            cursors = paging.get("cursors") if isinstance(paging, dict) else None
            after = cursors.get("after") if isinstance(cursors, dict) else None
            if not isinstance(paging, dict) or not paging.get("next") or not isinstance(after, str) or not after:
                return found
            params = {**params, "after": after}
        return found

    async def create_template(self, template: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a template for review: `{"id", "status": "PENDING"|"APPROVED"|..., "category"}`."""
        return await self.call(
            "create template", "POST", f"{self.credentials.waba_id}/message_templates", json=template
        )

    async def template(self, name: str, language: str) -> dict[str, Any] | None:
        """One template of the business account as Graph lists it (header, body, buttons, parameter format);
        None when the account has none of that name in that language."""
        params = {
            "fields": "id,name,status,category,language,parameter_format,components",
            "name": name,
            "language": language,
            "limit": str(TEMPLATE_PAGE_SIZE),
        }
        data = await self.call("template", "GET", f"{self.credentials.waba_id}/message_templates", params=params)
        page = data.get("data")
        found = [t for t in page if isinstance(t, dict)] if isinstance(page, list) else []
        return next((t for t in found if t.get("name") == name and t.get("language") == language), None)
