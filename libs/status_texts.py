"""What a manager reads in Kommo when a message was not delivered, in the account's language.

Whoever detects a failure (router, messenger_sender, an adapter's error) names its reason, a key of
this catalogue, with the reason's arguments; kommo_sender renders the text in the account's language
when it posts the `delivery_status` (reference §5: Kommo shows `error` to the manager, and requires it
with 905). Each reason also carries the Kommo error code it is posted with, so a code and its text
cannot drift apart. Rendering never fails: an unknown reason or a missing argument falls back to the
English text the reporter sent, else to a generic sentence.

Texts are for a sales manager, not an engineer: what happened, then what to do about it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

LANGUAGES: Final = ("en", "es", "pt")
DEFAULT_LANGUAGE: Final = "en"
# Kommo shows the text in a chat bubble; a longer one would be cut anyway.
MAX_TEXT_CHARS: Final = 500
MAX_ARG_CHARS: Final = 200


class KommoErrorCode(enum.IntEnum):
    """`error_code` of a failed `delivery_status` (reference §5)."""

    CLIENT_GONE = 901  # the client deleted the conversation (blocked the bot, left, deleted the account)
    INTEGRATION_DISABLED = 902  # the channel is off on the integration's side
    INTERNAL_ERROR = 903
    CANNOT_CREATE_CONVERSATION = 904  # e.g. the client is not on that messenger, or never wrote first
    OTHER = 905  # anything else; Kommo requires the text


@dataclass(frozen=True)
class Reason:
    key: str
    code: KommoErrorCode
    en: str
    es: str
    pt: str
    # Arguments given in bytes, shown to the manager as "50 MB".
    byte_sizes: frozenset[str] = frozenset()

    def template(self, language: str) -> str:
        return {"en": self.en, "es": self.es, "pt": self.pt}.get(language, self.en)


# Reason keys: what reporters put in DeliveryReport.reason (and on errors, see libs.errors).
CLIENT_BLOCKED: Final = "client_blocked"
CLIENT_LEFT: Final = "client_left"
CLIENT_DEACTIVATED: Final = "client_deactivated"
CONVERSATION_CLOSED: Final = "conversation_closed"
CHANNEL_DISCONNECTED: Final = "channel_disconnected"
CHANNEL_PAUSED: Final = "channel_paused"
UNKNOWN_CONVERSATION: Final = "unknown_conversation"
INTERRUPTED_SEND: Final = "interrupted_send"
PLATFORM_UNAVAILABLE: Final = "platform_unavailable"
CLIENT_NEVER_STARTED: Final = "client_never_started"
CHAT_NOT_FOUND: Final = "chat_not_found"
WRITE_FIRST_UNSUPPORTED: Final = "write_first_unsupported"
PLATFORM_REFUSED: Final = "platform_refused"
TEXT_TOO_LONG: Final = "text_too_long"
FILE_TOO_LARGE: Final = "file_too_large"
FILE_UNAVAILABLE: Final = "file_unavailable"
TYPE_UNSUPPORTED: Final = "type_unsupported"
REACTION_UNSUPPORTED: Final = "reaction_unsupported"
UNDELIVERED: Final = "undelivered"
WINDOW_CLOSED: Final = "window_closed"
RECIPIENT_UNDELIVERABLE: Final = "recipient_undeliverable"
TEMPLATE_REFUSED: Final = "template_refused"
EDIT_UNSUPPORTED: Final = "edit_unsupported"
TEMPLATE_HEADER_MEDIA_MISSING: Final = "template_header_media_missing"
SENDING_LIMITED: Final = "sending_limited"
CHOICES_UNSUPPORTED: Final = "choices_unsupported"

_REASONS = (
    # 901: the client cannot be reached any more.
    Reason(
        CLIENT_BLOCKED,
        KommoErrorCode.CLIENT_GONE,
        en="Not delivered: the client blocked the bot. Your replies reach them again once they unblock it and write.",
        es="No entregado: el cliente bloqueó el bot. Tus respuestas le llegarán de nuevo cuando lo desbloquee y "
        "te escriba.",
        pt="Não entregue: o cliente bloqueou o bot. Suas respostas voltam a chegar quando ele desbloquear o bot e "
        "escrever.",
    ),
    Reason(
        CLIENT_LEFT,
        KommoErrorCode.CLIENT_GONE,
        en="Not delivered: the client left the chat. Your replies reach them again once they write to you.",
        es="No entregado: el cliente salió del chat. Tus respuestas le llegarán de nuevo cuando te escriba.",
        pt="Não entregue: o cliente saiu do chat. Suas respostas voltam a chegar quando ele escrever para você.",
    ),
    Reason(
        CLIENT_DEACTIVATED,
        KommoErrorCode.CLIENT_GONE,
        en="Not delivered: the client deleted their messenger account. Contact them another way, e.g. by phone.",
        es="No entregado: el cliente eliminó su cuenta del mensajero. Contáctalo por otro medio, por ejemplo por "
        "teléfono.",
        pt="Não entregue: o cliente excluiu a conta do mensageiro. Fale com ele por outro meio, por exemplo por "
        "telefone.",
    ),
    Reason(
        CONVERSATION_CLOSED,
        KommoErrorCode.CLIENT_GONE,
        en="Not delivered: the client closed this conversation. Your replies reach them again once they write to you.",
        es="No entregado: el cliente cerró esta conversación. Tus respuestas le llegarán de nuevo cuando te escriba.",
        pt="Não entregue: o cliente encerrou esta conversa. Suas respostas voltam a chegar quando ele escrever "
        "para você.",
    ),
    # 902: the channel is off on our side.
    Reason(
        CHANNEL_DISCONNECTED,
        KommoErrorCode.INTEGRATION_DISABLED,
        en="Not sent: the {channel} channel is disconnected. Ask an admin to reconnect it in the Messenger Bridge "
        "settings, then send again.",
        es="No enviado: el canal {channel} está desconectado. Pide a un administrador que lo vuelva a conectar en "
        "la configuración de Messenger Bridge y envíalo de nuevo.",
        pt="Não enviado: o canal {channel} está desconectado. Peça a um administrador para reconectá-lo nas "
        "configurações do Messenger Bridge e envie de novo.",
    ),
    Reason(
        CHANNEL_PAUSED,
        KommoErrorCode.INTEGRATION_DISABLED,
        en="Not sent: the {channel} channel is paused. Ask an admin to resume it in the Messenger Bridge settings, "
        "then send again.",
        es="No enviado: el canal {channel} está en pausa. Pide a un administrador que lo reactive en la "
        "configuración de Messenger Bridge y envíalo de nuevo.",
        pt="Não enviado: o canal {channel} está pausado. Peça a um administrador para reativá-lo nas configurações "
        "do Messenger Bridge e envie de novo.",
    ),
    # 903: the bridge could not do it, or cannot tell.
    Reason(
        UNKNOWN_CONVERSATION,
        KommoErrorCode.INTERNAL_ERROR,
        en="Not sent: this chat belongs to no connected channel (it may have been removed). Your replies reach the "
        "client again once they write to a connected bot.",
        es="No enviado: este chat no pertenece a ningún canal conectado (quizá se eliminó). Tus respuestas le "
        "llegarán de nuevo cuando el cliente escriba a un bot conectado.",
        pt="Não enviado: este chat não pertence a nenhum canal conectado (talvez tenha sido removido). Suas "
        "respostas voltam a chegar quando o cliente escrever para um bot conectado.",
    ),
    Reason(
        INTERRUPTED_SEND,
        KommoErrorCode.INTERNAL_ERROR,
        en="Not confirmed: sending was interrupted, so it is unknown whether the client got this message. Send it "
        "again if they did not.",
        es="Sin confirmar: el envío se interrumpió y no se sabe si el cliente recibió este mensaje. Envíalo de nuevo "
        "si no le llegó.",
        pt="Não confirmado: o envio foi interrompido e não se sabe se o cliente recebeu esta mensagem. Envie de "
        "novo se ele não a recebeu.",
    ),
    Reason(
        PLATFORM_UNAVAILABLE,
        KommoErrorCode.INTERNAL_ERROR,
        en="Not sent: {platform} did not accept the message after many attempts. Send it again in a few minutes.",
        es="No enviado: {platform} no aceptó el mensaje tras muchos intentos. Envíalo de nuevo en unos minutos.",
        pt="Não enviado: o {platform} não aceitou a mensagem depois de muitas tentativas. Envie de novo em alguns "
        "minutos.",
    ),
    # 904: no conversation can be opened with this client.
    Reason(
        CLIENT_NEVER_STARTED,
        KommoErrorCode.CANNOT_CREATE_CONVERSATION,
        en="Not delivered: the client never started a chat with the bot, and bots cannot write first. Ask the "
        "client to write to the bot.",
        es="No entregado: el cliente nunca inició un chat con el bot y los bots no pueden escribir primero. Pide "
        "al cliente que escriba al bot.",
        pt="Não entregue: o cliente nunca iniciou um chat com o bot, e bots não podem escrever primeiro. Peça ao "
        "cliente para escrever para o bot.",
    ),
    Reason(
        CHAT_NOT_FOUND,
        KommoErrorCode.CANNOT_CREATE_CONVERSATION,
        en="Not delivered: the messenger does not know this chat. If the channel's bot was replaced, the client "
        "has to write to the new bot first.",
        es="No entregado: el mensajero no reconoce este chat. Si se cambió el bot del canal, el cliente tiene que "
        "escribir primero al bot nuevo.",
        pt="Não entregue: o mensageiro não reconhece este chat. Se o bot do canal foi trocado, o cliente precisa "
        "escrever primeiro para o novo bot.",
    ),
    Reason(
        WRITE_FIRST_UNSUPPORTED,
        KommoErrorCode.CANNOT_CREATE_CONVERSATION,
        en="Not sent: this channel cannot start a conversation. The client has to write first.",
        es="No enviado: este canal no puede iniciar una conversación. El cliente tiene que escribir primero.",
        pt="Não enviado: este canal não pode iniciar uma conversa. O cliente precisa escrever primeiro.",
    ),
    Reason(
        RECIPIENT_UNDELIVERABLE,
        KommoErrorCode.CANNOT_CREATE_CONVERSATION,
        en="Not delivered: {platform} cannot deliver to this number (it may not use {platform}, have an outdated "
        "app, or have blocked you). Contact the client another way.",
        es="No entregado: {platform} no puede entregar a este número (puede que no use {platform}, tenga la app "
        "desactualizada o te haya bloqueado). Contacta al cliente por otro medio.",
        pt="Não entregue: o {platform} não consegue entregar para este número (talvez não use o {platform}, tenha o "
        "app desatualizado ou tenha bloqueado você). Fale com o cliente por outro meio.",
    ),
    # 905: anything else, always with a text.
    Reason(
        PLATFORM_REFUSED,
        KommoErrorCode.OTHER,
        en="Not delivered: {platform} refused the message ({detail}).",
        es="No entregado: {platform} rechazó el mensaje ({detail}).",
        pt="Não entregue: o {platform} recusou a mensagem ({detail}).",
    ),
    Reason(
        SENDING_LIMITED,
        KommoErrorCode.OTHER,
        en="Not delivered: {platform} held it back for its sending limits (too many messages in a short time). "
        "Wait a minute, then send it again.",
        es="No entregado: {platform} lo retuvo por sus límites de envío (demasiados mensajes en poco tiempo). "
        "Espera un minuto y envíalo de nuevo.",
        pt="Não entregue: o {platform} reteve a mensagem pelos limites de envio (mensagens demais em pouco "
        "tempo). Espere um minuto e envie de novo.",
    ),
    Reason(
        TEXT_TOO_LONG,
        KommoErrorCode.OTHER,
        en="Not sent: the message is longer than {platform} allows ({limit} characters). Split it into shorter "
        "messages.",
        es="No enviado: el mensaje supera lo que permite {platform} ({limit} caracteres). Divídelo en mensajes más "
        "cortos.",
        pt="Não enviado: a mensagem passa do limite do {platform} ({limit} caracteres). Divida-a em mensagens "
        "mais curtas.",
    ),
    Reason(
        FILE_TOO_LARGE,
        KommoErrorCode.OTHER,
        en="Not sent: the file {name} ({size}) is larger than {platform} allows ({limit}). Send a smaller file or "
        "a link to it.",
        es="No enviado: el archivo {name} ({size}) supera lo que permite {platform} ({limit}). Envía un archivo "
        "más pequeño o un enlace.",
        pt="Não enviado: o arquivo {name} ({size}) passa do limite do {platform} ({limit}). Envie um arquivo menor "
        "ou um link.",
        byte_sizes=frozenset({"size", "limit"}),
    ),
    Reason(
        FILE_UNAVAILABLE,
        KommoErrorCode.OTHER,
        en="Not sent: the file {name} could not be downloaded from Kommo. Attach it again and send.",
        es="No enviado: no se pudo descargar el archivo {name} de Kommo. Adjúntalo de nuevo y envíalo.",
        pt="Não enviado: não foi possível baixar o arquivo {name} do Kommo. Anexe-o de novo e envie.",
    ),
    Reason(
        TYPE_UNSUPPORTED,
        KommoErrorCode.OTHER,
        en="Not sent: {platform} cannot show this kind of message ({type}). Send it as a file or as text.",
        es="No enviado: {platform} no puede mostrar este tipo de mensaje ({type}). Envíalo como archivo o como texto.",
        pt="Não enviado: o {platform} não consegue mostrar este tipo de mensagem ({type}). Envie como arquivo ou "
        "como texto.",
    ),
    Reason(
        REACTION_UNSUPPORTED,
        KommoErrorCode.OTHER,
        en="Reaction not delivered: the client's messenger does not accept this emoji as a reaction.",
        es="Reacción no entregada: el mensajero del cliente no acepta este emoji como reacción.",
        pt="Reação não entregue: o mensageiro do cliente não aceita este emoji como reação.",
    ),
    Reason(
        WINDOW_CLOSED,
        KommoErrorCode.OTHER,
        en="Not delivered: more than 24 hours have passed since the client last wrote, and {platform} then allows "
        "only an approved template. Send a template to reopen the conversation.",
        es="No entregado: pasaron más de 24 horas desde el último mensaje del cliente y {platform} solo permite "
        "entonces una plantilla aprobada. Envía una plantilla para reabrir la conversación.",
        pt="Não entregue: passaram mais de 24 horas desde a última mensagem do cliente, e o {platform} então só "
        "permite um modelo aprovado. Envie um modelo para reabrir a conversa.",
    ),
    Reason(
        TEMPLATE_REFUSED,
        KommoErrorCode.OTHER,
        en="Not sent: {platform} refused the template ({detail}). Check the template and its parameters, then send "
        "again.",
        es="No enviado: {platform} rechazó la plantilla ({detail}). Revisa la plantilla y sus parámetros y envíala "
        "de nuevo.",
        pt="Não enviado: o {platform} recusou o modelo ({detail}). Confira o modelo e seus parâmetros e envie de novo.",
    ),
    Reason(
        TEMPLATE_HEADER_MEDIA_MISSING,
        KommoErrorCode.OTHER,
        en="Not sent: the {platform} template {name} starts with a {kind} and no file came with it. Attach the "
        "{kind} to the template message, then send again.",
        es="No enviado: la plantilla {name} de {platform} empieza con un archivo ({kind}) y no se adjuntó ninguno. "
        "Adjunta el archivo al mensaje de plantilla y envíalo de nuevo.",
        pt="Não enviado: o modelo {name} do {platform} começa com um arquivo ({kind}) e nenhum foi anexado. Anexe o "
        "arquivo à mensagem de modelo e envie de novo.",
    ),
    Reason(
        EDIT_UNSUPPORTED,
        KommoErrorCode.OTHER,
        en="Not changed: {platform} does not let a business edit a message already sent. Send the correction as a "
        "new message.",
        es="Sin cambios: {platform} no permite a una empresa editar un mensaje ya enviado. Envía la corrección como "
        "un mensaje nuevo.",
        pt="Não alterado: o {platform} não permite que uma empresa edite uma mensagem já enviada. Envie a correção "
        "como uma nova mensagem.",
    ),
    Reason(
        UNDELIVERED,
        KommoErrorCode.OTHER,
        en="Not delivered. Send the message again; if it fails again, contact your Messenger Bridge support.",
        es="No entregado. Envía el mensaje de nuevo; si vuelve a fallar, contacta con el soporte de Messenger Bridge.",
        pt="Não entregue. Envie a mensagem de novo; se falhar outra vez, fale com o suporte do Messenger Bridge.",
    ),
    Reason(
        CHOICES_UNSUPPORTED,
        KommoErrorCode.OTHER,
        en="Not sent: {platform} cannot show these options ({detail}). Shorten the buttons or the list, then send "
        "again.",
        es="No enviado: {platform} no puede mostrar estas opciones ({detail}). Acorta los botones o la lista y "
        "envíalo de nuevo.",
        pt="Não enviado: o {platform} não consegue mostrar estas opções ({detail}). Encurte os botões ou a lista e "
        "envie de novo.",
    ),
)
REASONS: Final[Mapping[str, Reason]] = {reason.key: reason for reason in _REASONS}


# ---------------------------------------------------------------------------------------------------------
# Languages


def supported_language(value: str) -> str | None:
    """`en` / `es` / `pt` for a language tag a user or platform gives (`pt-BR`, `es_419`, `EN`), else None."""
    primary = re.split(r"[-_]", value.strip(), maxsplit=1)[0].lower()
    return primary if primary in LANGUAGES else None


def normalize_language(value: str) -> str:
    """The language kept for an account: a supported one, anything else English."""
    return supported_language(value) or DEFAULT_LANGUAGE


# ---------------------------------------------------------------------------------------------------------
# Rendering

# Platform names as adapters give them (content.proto's Platform, lower case) -> as people write them.
_PLATFORMS = {
    "telegram": "Telegram",
    "whatsapp": "WhatsApp",
    "viber": "Viber",
    "wechat": "WeChat",
    "apple": "Apple Messages",
    "bot_framework": "Microsoft Teams",
}
# Canonical content kinds (content.proto) in the manager's words.
_KINDS = {
    "picture": {"en": "picture", "es": "imagen", "pt": "imagem"},
    "video": {"en": "video", "es": "video", "pt": "vídeo"},
    "file": {"en": "file", "es": "archivo", "pt": "arquivo"},
    "voice": {"en": "voice message", "es": "mensaje de voz", "pt": "mensagem de voz"},
    "audio": {"en": "audio", "es": "audio", "pt": "áudio"},
    "sticker": {"en": "sticker", "es": "sticker", "pt": "figurinha"},
    "location": {"en": "location", "es": "ubicación", "pt": "localização"},
    "contact": {"en": "contact", "es": "contacto", "pt": "contato"},
    "template": {"en": "template", "es": "plantilla", "pt": "modelo"},
    "interactive": {"en": "buttons", "es": "botones", "pt": "botões"},
}
_SIZE_UNITS = ("B", "KB", "MB", "GB", "TB")


def human_size(size: int, language: str = DEFAULT_LANGUAGE) -> str:
    """`52428800` -> `50 MB`; one decimal below ten units (`1.5 MB`, `1,5 MB` in es/pt)."""
    value = float(size)
    unit = 0
    while value >= 1024 and unit < len(_SIZE_UNITS) - 1:
        value /= 1024
        unit += 1
    number = f"{value:.1f}".removesuffix(".0") if value < 10 and unit else f"{value:.0f}"
    if language in ("es", "pt"):
        number = number.replace(".", ",")
    return f"{number} {_SIZE_UNITS[unit]}"


def _argument(reason: Reason, name: str, value: str, language: str) -> str:
    value = " ".join(value.split())[:MAX_ARG_CHARS]
    if name in reason.byte_sizes and value.isdigit():
        return human_size(int(value), language)
    if name == "platform":
        return _PLATFORMS.get(value.lower(), value)
    if name == "type":
        return _KINDS.get(value.lower(), {}).get(language, value)
    return value


def code_of(reason: str, fallback: int = KommoErrorCode.OTHER) -> int:
    """The Kommo error code a reason is posted with: the catalogue's, else `fallback` when that is a code
    Kommo takes, else 905."""
    known = REASONS.get(reason)
    if known is not None:
        return int(known.code)
    return fallback if fallback in {int(code) for code in KommoErrorCode} else int(KommoErrorCode.OTHER)


def render(reason: str, args: Mapping[str, str], language: str, fallback: str = "") -> str:
    """The text a manager reads for `reason` in `language`. Never raises and never returns "": an
    unknown reason, or a template whose argument is missing, gives `fallback` (the reporter's English
    text), else the generic text."""
    language = supported_language(language) or DEFAULT_LANGUAGE
    known = REASONS.get(reason)
    if known is not None:
        try:
            arguments = {name: _argument(known, name, value, language) for name, value in args.items()}
            return known.template(language).format_map(arguments)[:MAX_TEXT_CHARS]
        except (KeyError, IndexError, ValueError, AttributeError):
            pass
    if fallback.strip():
        return fallback.strip()[:MAX_TEXT_CHARS]
    return REASONS[UNDELIVERED].template(language)
