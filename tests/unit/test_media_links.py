"""Signed media links (libs.media.links) and how a client's content becomes links for Kommo
(libs.media.inbound)."""

from __future__ import annotations

import base64
import json
from urllib.parse import unquote, urlsplit

import pytest
from kommo_bridge.events.v1 import content_pb2

from libs.config import load_settings
from libs.errors import BadRequestError
from libs.media import LinkedFile, MediaLinkExpired, MediaLinkRefused, MediaLinks, url_file_name
from libs.media.inbound import InboundMedia, default_file_name, link_content, readable_size
from libs.messengers.registry import MediaLimits

SERVICE_TOKEN = "s3rvice-token-for-tests"
NOW = 1_760_000_000.0
FILE = LinkedFile(
    connection_id="conn-1",
    platform=content_pb2.PLATFORM_TELEGRAM,
    file_ref="BQACAgIAAxkBAAIfile",
    file_name="Счёт 5.pdf",
    mime_type="application/pdf",
    size=34_567,
)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def links(clock: Clock) -> MediaLinks:
    return MediaLinks(SERVICE_TOKEN, "https://bridge.example/", 3600, clock=clock)


def split(url: str) -> tuple[str, str]:
    """(token, name) as the gateway's route receives them."""
    path = urlsplit(url).path
    assert path.startswith("/media/v1/")
    token, name = path.removeprefix("/media/v1/").split("/")
    return token, unquote(name)


def reencode(token: str, change: dict[int, object]) -> str:
    """The same token with payload fields changed and the original signature kept (a forgery)."""
    payload, signature = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for index, value in change.items():
        fields[index] = value
    forged = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{forged}.{signature}"


def test_a_link_round_trips_to_the_file_it_names(links: MediaLinks) -> None:
    url = links.url(FILE)
    assert url.startswith("https://bridge.example/media/v1/")
    token, name = split(url)
    assert name == "Счёт 5.pdf"
    assert links.verify(token, name) == FILE


def test_a_link_never_carries_the_service_token_or_a_bot_token(links: MediaLinks) -> None:
    url = links.url(FILE)
    assert SERVICE_TOKEN not in url
    assert "/bot" not in url and "file/" not in url


def test_any_service_with_the_same_service_token_verifies_and_no_other(clock: Clock) -> None:
    signer = MediaLinks(SERVICE_TOKEN, "https://bridge.example", 3600, clock=clock)
    token, name = split(signer.url(FILE))
    assert MediaLinks(SERVICE_TOKEN, "https://elsewhere", 60, clock=clock).verify(token, name) == FILE
    with pytest.raises(MediaLinkRefused, match="signature"):
        MediaLinks("another-service-token", "https://bridge.example", 3600, clock=clock).verify(token, name)


def test_an_expired_link_is_refused_as_expired(links: MediaLinks, clock: Clock) -> None:
    token, name = split(links.url(FILE))
    clock.now = NOW + 3599
    assert links.verify(token, name) == FILE
    clock.now = NOW + 3600
    with pytest.raises(MediaLinkExpired):
        links.verify(token, name)


def test_an_explicit_expiry_is_honoured(links: MediaLinks) -> None:
    token = links.token(FILE, expires_at=int(NOW) - 1)
    with pytest.raises(MediaLinkExpired):
        links.verify(token, url_file_name(FILE.file_name))


def test_a_tampered_token_is_refused(links: MediaLinks) -> None:
    token, name = split(links.url(FILE))
    payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(MediaLinkRefused, match="signature"):
        links.verify(f"{payload}.{flipped}", name)
    # Pushing the expiry back without the key is a forgery too, not a longer-lived link.
    with pytest.raises(MediaLinkRefused, match="signature") as refused:
        links.verify(reencode(token, {7: int(NOW) + 10**9}), name)
    assert not isinstance(refused.value, MediaLinkExpired)


def test_only_the_one_spelling_of_a_signature_is_accepted(links: MediaLinks) -> None:
    # 32 bytes take 43 base64 characters, the last carrying two spare bits: every other spelling of
    # the same bytes is a different link, and refused.
    token, name = split(links.url(FILE))
    payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    value = alphabet.index(signature[-1])
    for spare in range(1, 4):
        respelled = signature[:-1] + alphabet[(value & ~3) | ((value + spare) & 3)]
        with pytest.raises(MediaLinkRefused, match="signature"):
            links.verify(f"{payload}.{respelled}", name)


def test_a_token_for_another_file_is_refused(links: MediaLinks) -> None:
    token, _ = split(links.url(FILE))
    with pytest.raises(MediaLinkRefused, match="another file"):
        links.verify(token, "someone-elses.pdf")
    with pytest.raises(MediaLinkRefused, match="signature"):
        links.verify(reencode(token, {3: "BQACAgIAAxkBAAIother"}), url_file_name(FILE.file_name))


def test_a_token_moved_to_another_connection_is_refused(links: MediaLinks) -> None:
    token, name = split(links.url(FILE))
    with pytest.raises(MediaLinkRefused, match="signature"):
        links.verify(reencode(token, {1: "conn-2"}), name)


@pytest.mark.parametrize(
    "token",
    ["", "no-dot-at-all", "a.b.c", "abc.", ".abc", "ab+c.de/f", "x" * 5000 + ".y", "é.é"],
)
def test_malformed_tokens_are_refused(links: MediaLinks, token: str) -> None:
    with pytest.raises(MediaLinkRefused):
        links.verify(token, "file")


def test_file_names_become_one_safe_path_segment() -> None:
    assert url_file_name("a/b\\c.txt") == "a_b_c.txt"
    assert url_file_name("..") == "file"
    assert url_file_name("") == "file"
    assert url_file_name("line\nbreak.txt") == "line_break.txt"
    links = MediaLinks(SERVICE_TOKEN, "https://b", 60)
    odd = LinkedFile("c", 1, "ref", "../../etc/passwd", "text/plain", 3)
    token, name = split(links.url(odd))
    assert name == ".._.._etc_passwd"
    assert links.verify(token, name) == odd


def test_the_key_needs_a_service_token() -> None:
    with pytest.raises(ValueError):
        MediaLinks("", "https://b", 60)
    assert SERVICE_TOKEN not in repr(MediaLinks(SERVICE_TOKEN, "https://b", 60))


# ---------------------------------------------------------------------------------------------------------
# libs.media.inbound

CLOUD = MediaLimits(download_bytes=20 * 2**20, upload_bytes=50 * 2**20)


def document(size: int, name: str = "report.pdf", caption: str = "") -> content_pb2.Content:
    return content_pb2.Content(
        media=content_pb2.Media(
            kind=content_pb2.MEDIA_KIND_FILE,
            file_ref="doc-file-id",
            file_name=name,
            size=size,
            mime_type="application/pdf",
            caption=caption,
        )
    )


def link(content: content_pb2.Content, links: MediaLinks, limits: MediaLimits = CLOUD) -> content_pb2.Content:
    return link_content(
        content,
        links=links,
        connection_id="conn-1",
        platform=content_pb2.PLATFORM_TELEGRAM,
        limits=limits,
        platform_label="Telegram",
    )


def test_a_file_becomes_a_signed_link_keeping_name_size_type_and_caption(links: MediaLinks) -> None:
    linked = link(document(34_567, caption="see attached"), links)
    media = linked.media
    assert (media.file_name, media.size, media.mime_type, media.caption) == (
        "report.pdf",
        34_567,
        "application/pdf",
        "see attached",
    )
    token, name = split(media.file_ref)
    assert links.verify(token, name) == LinkedFile(
        "conn-1", content_pb2.PLATFORM_TELEGRAM, "doc-file-id", "report.pdf", "application/pdf", 34_567
    )


def test_a_file_without_a_name_is_linked_under_a_default_one(links: MediaLinks) -> None:
    photo = content_pb2.Content(
        media=content_pb2.Media(
            kind=content_pb2.MEDIA_KIND_PICTURE, file_ref="photo-id", size=98_000, mime_type="image/jpeg"
        )
    )
    linked = link(photo, links)
    assert linked.media.file_name == "picture.jpg"
    assert split(linked.media.file_ref)[1] == "picture.jpg"
    assert default_file_name("voice", "audio/ogg") == "voice.ogg"
    assert default_file_name("sticker", "application/x-tgsticker") == "sticker.tgs"
    assert default_file_name("file", "") == "file"


def test_a_file_over_the_download_limit_becomes_a_clear_text(links: MediaLinks) -> None:
    big = document(35 * 2**20 + 200 * 2**10, name="scan.pdf", caption="the contract")
    text = link(big, links).text.body
    assert text.startswith(
        '[The client sent a file that is too large for the Telegram bot API to fetch: "scan.pdf", 35.2 MB '
        "(the limit is 20 MB)."
    )
    assert text.endswith("]\nthe contract")
    # Exactly at the limit is still fetched.
    assert link(document(20 * 2**20), links).WhichOneof("body") == "media"


def test_without_a_download_limit_big_files_are_linked(links: MediaLinks) -> None:
    local = MediaLimits(download_bytes=None, upload_bytes=2000 * 2**20)
    assert link(document(100 * 2**20), links, local).WhichOneof("body") == "media"


def test_a_sticker_becomes_a_link_with_its_type(links: MediaLinks) -> None:
    sticker = content_pb2.Content(
        sticker=content_pb2.Sticker(file_ref="stk", emoji="👍", size=30_000, mime_type="image/webp")
    )
    linked = link(sticker, links)
    token, name = split(linked.sticker.file_ref)
    assert name == "sticker.webp"
    assert links.verify(token, name).mime_type == "image/webp"
    assert linked.sticker.emoji == "👍"


def test_content_without_platform_files_is_unchanged(links: MediaLinks) -> None:
    for content in (
        content_pb2.Content(text=content_pb2.Text(body="see https://example.com")),
        content_pb2.Content(location=content_pb2.Location(lat=1.5, lon=2.5)),
        content_pb2.Content(
            media=content_pb2.Media(kind=content_pb2.MEDIA_KIND_FILE, file_ref="https://amojo/x.pdf", file_name="x")
        ),
    ):
        assert link(content, links) == content


def test_inbound_media_uses_the_configured_limits(links: MediaLinks) -> None:
    big = document(30 * 2**20)
    cloud = InboundMedia(links, load_settings(telegram_local_api=False))
    assert cloud.link(big, "conn-1", content_pb2.PLATFORM_TELEGRAM).WhichOneof("body") == "text"
    local = InboundMedia(links, load_settings(telegram_local_api=True))
    assert local.link(big, "conn-1", content_pb2.PLATFORM_TELEGRAM).WhichOneof("body") == "media"
    with pytest.raises(BadRequestError):
        cloud.link(big, "", content_pb2.PLATFORM_TELEGRAM)


def test_sizes_read_like_a_person_would() -> None:
    assert [readable_size(n) for n in (5, 2048, 20 * 2**20, 3 * 2**30)] == ["5 B", "2 KB", "20 MB", "3 GB"]
