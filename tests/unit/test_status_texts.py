"""The status-text catalogue: every reason has a Kommo code and a text in each language, and rendering
never fails (an unknown reason or a missing argument falls back instead of losing the status)."""

from __future__ import annotations

import string

import pytest

from libs import status_texts
from libs.status_texts import (
    LANGUAGES,
    MAX_TEXT_CHARS,
    REASONS,
    KommoErrorCode,
    code_of,
    human_size,
    normalize_language,
    render,
    supported_language,
)

KEY_CONSTANTS = {
    value for name, value in vars(status_texts).items() if name.isupper() and isinstance(value, str) and value.islower()
} - set(LANGUAGES)


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def test_every_key_has_a_reason_and_every_reason_a_key() -> None:
    assert set(REASONS) == KEY_CONSTANTS
    assert all(key == reason.key for key, reason in REASONS.items())
    # the ones the other parts of the bridge report
    assert {
        "client_blocked",
        "client_left",
        "client_deactivated",
        "client_never_started",
        "chat_not_found",
        "channel_disconnected",
        "channel_paused",
        "unknown_conversation",
        "write_first_unsupported",
        "interrupted_send",
        "platform_refused",
        "platform_unavailable",
        "file_too_large",
        "file_unavailable",
        "type_unsupported",
        "reaction_unsupported",
        "conversation_closed",
    } <= set(REASONS)


@pytest.mark.parametrize("key", sorted(REASONS))
def test_each_reason_has_a_kommo_code_and_a_text_per_language(key: str) -> None:
    reason = REASONS[key]
    assert isinstance(reason.code, KommoErrorCode) and 901 <= reason.code <= 905
    texts = {language: reason.template(language) for language in LANGUAGES}
    assert all(text.strip() for text in texts.values())
    assert texts["es"] != texts["en"] and texts["pt"] != texts["en"], "not translated"
    # the same arguments in every language, only plain named fields (no attribute or index lookups)
    fields = placeholders(texts["en"])
    assert all(placeholders(text) == fields for text in texts.values()), key
    assert all(field.isidentifier() for field in fields), key
    assert reason.byte_sizes <= fields


def test_codes_follow_kommos_meaning() -> None:
    assert code_of("client_blocked") == code_of("client_left") == code_of("client_deactivated") == 901
    assert code_of("channel_disconnected") == code_of("channel_paused") == 902
    assert code_of("unknown_conversation") == code_of("interrupted_send") == 903
    assert code_of("write_first_unsupported") == code_of("client_never_started") == 904
    assert code_of("platform_refused") == code_of("file_too_large") == 905
    # a reason the catalogue lacks keeps the reporter's code when Kommo takes it, else 905
    assert code_of("something_new", 903) == 903
    assert code_of("something_new", 0) == code_of("something_new", 999) == 905


def test_arguments_render_in_the_managers_words() -> None:
    args = {
        "name": "catalogue.pdf",
        "size": str(75 * 1024 * 1024),
        "limit": str(50 * 1024 * 1024),
        "platform": "telegram",
    }
    assert render("file_too_large", args, "en") == (
        "Not sent: the file catalogue.pdf (75 MB) is larger than Telegram allows (50 MB). "
        "Send a smaller file or a link to it."
    )
    spanish = render("file_too_large", {**args, "size": str(1536 * 1024)}, "es")
    assert "catalogue.pdf (1,5 MB)" in spanish and "Telegram (50 MB)" in spanish
    assert render("type_unsupported", {"type": "sticker", "platform": "whatsapp"}, "pt") == (
        "Não enviado: o WhatsApp não consegue mostrar este tipo de mensagem (figurinha). Envie como arquivo ou "
        "como texto."
    )
    assert render("channel_disconnected", {"channel": "Shop bot (@shop_bot)"}, "es").startswith(
        "No enviado: el canal Shop bot (@shop_bot) está desconectado."
    )
    # a character limit is not a file size
    assert "(4096 characters)" in render("text_too_long", {"platform": "telegram", "limit": "4096"}, "en")


def test_a_missing_argument_falls_back_instead_of_failing() -> None:
    fallback = "Telegram refused the file."
    assert render("file_too_large", {"name": "a.pdf"}, "es", fallback=fallback) == fallback
    generic = render("file_too_large", {"name": "a.pdf"}, "pt")
    assert generic == REASONS["undelivered"].pt


def test_an_unknown_reason_or_language_never_loses_the_text() -> None:
    assert render("", {}, "es", fallback="The client cannot receive messages") == "The client cannot receive messages"
    assert render("added_next_year", {}, "es") == REASONS["undelivered"].es
    assert render("client_blocked", {}, "de") == REASONS["client_blocked"].en
    assert render("client_blocked", {}, "pt-BR") == REASONS["client_blocked"].pt


def test_arguments_are_text_only_and_bounded() -> None:
    injected = render("platform_refused", {"platform": "telegram", "detail": "{platform} {0} {detail.__class__}"}, "en")
    assert injected == "Not delivered: Telegram refused the message ({platform} {0} {detail.__class__})."
    long = render("platform_refused", {"platform": "telegram", "detail": "x" * 5000 + "\n\n  y"}, "en")
    assert len(long) <= MAX_TEXT_CHARS and "\n" not in long
    assert len(render("", {}, "en", fallback="z" * 5000)) == MAX_TEXT_CHARS


@pytest.mark.parametrize(
    ("given", "supported"),
    [
        ("en", "en"),
        ("ES", "es"),
        ("pt-BR", "pt"),
        ("pt_PT", "pt"),
        ("es-419", "es"),
        ("es_MX", "es"),
        ("ru", None),
        ("", None),
        ("english", None),
    ],
)
def test_only_english_spanish_and_portuguese_are_kept(given: str, supported: str | None) -> None:
    assert supported_language(given) == supported
    assert normalize_language(given) == (supported or "en")


def test_sizes_read_like_a_file_manager_shows_them() -> None:
    assert human_size(512) == "512 B"
    assert human_size(20 * 1024 * 1024) == "20 MB"
    assert human_size(1536 * 1024) == "1.5 MB"
    assert human_size(1536 * 1024, "pt") == "1,5 MB"
    assert human_size(2 * 1024**3) == "2 GB"
