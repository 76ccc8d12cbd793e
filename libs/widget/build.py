"""`make widget`: the Kommo widget archive, `dist/widget.zip`, by the marketplace rules (reference §12).

The widget (sources in `widget/`) opens the bridge's settings window inside Kommo; it finds the bridge
at the address an admin saves in its `bridge_url` setting, and the build writes the bridge's public
address (`BRIDGE_PUBLIC_URL`, or `--public-url`) into `script.js`, where it is the value that setting
starts with. Without a usable address there is nothing for the widget to open, so the build stops with
a message saying what to set.

What the build does:
- takes `manifest.json`, `i18n/*.json`, `script.js` and `style.css` from `widget/`, fills in the
  public address, the support contact and (optionally) the version, and writes every text file as
  UTF-8 without BOM with LF line endings (whatever the checkout did to them);
- draws the five logos and the tour pictures (`libs.widget.art`: no binary is kept in git);
- checks what moderation checks: every i18n key the manifest and the script use exists in every
  language, the languages have the same keys, the tour pictures exist, and `script.js` has no `eval`,
  synchronous request, `alert`/`confirm` or console output;
- zips it all with `manifest.json` at the archive's root, in a fixed order with fixed timestamps, so
  the same inputs give the same archive byte for byte.

The support contact (the manifest requires a link or an e-mail, and the widget shows it with every
error): `--support-url` / `BRIDGE_SUPPORT_URL`, `--support-email` / `BRIDGE_SUPPORT_EMAIL`; with neither,
the bridge's public address stands in and the build says so.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from libs.widget import art

SOURCE: Final = Path(__file__).resolve().parents[2] / "widget"
OUTPUT: Final = Path("dist/widget.zip")
TEXT_FILES: Final = ("manifest.json", "script.js", "style.css")
SESSION_PATH: Final = "/settings/api/session"
ZIP_TIME: Final = (2024, 1, 1, 0, 0, 0)
MAX_IMAGE_BYTES: Final = 300 * 1024
LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})
HOST: Final = re.compile(r"^[a-z0-9.-]+$")
EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
VERSION: Final = re.compile(r"^\d+\.\d+\.\d+$")
PLACEHOLDER: Final = re.compile(r"'@([A-Z_]+)@'")
SCRIPT_KEY: Final = re.compile(r"\bt\('([a-z_.]+)'\)")
FORBIDDEN: Final = {
    r"\beval\s*\(": "eval()",
    r"\bnew\s+Function\s*\(": "new Function()",
    r"\basync\s*:\s*false\b": "a synchronous request (async: false)",
    r"\balert\s*\(": "alert()",
    r"\bconfirm\s*\(": "confirm()",
    r"\bconsole\s*\.": "console output",
    r"\bdebugger\b": "a debugger statement",
}
EXAMPLE: Final = "make widget BRIDGE_PUBLIC_URL=https://bridge.example.com"


class WidgetBuildError(Exception):
    """The archive cannot be built; the message says why and what to do."""


@dataclass(frozen=True)
class Built:
    path: Path
    public_url: str
    names: list[str]
    size: int
    warnings: list[str] = field(default_factory=list)


def public_address(value: str | None) -> str:
    """The bridge's public address as the widget uses it (`https://host[:port][/path]`, no trailing
    slash), or WidgetBuildError saying what is wrong with it."""
    raw = (value or "").strip()
    if not raw:
        raise WidgetBuildError(
            "the widget needs the bridge's public address (it calls <address>/settings/api/session to open "
            f"the settings window): set BRIDGE_PUBLIC_URL, for example `{EXAMPLE}`"
        )

    def refuse(why: str) -> WidgetBuildError:
        return WidgetBuildError(f"BRIDGE_PUBLIC_URL={raw!r} {why}; for example `{EXAMPLE}`")

    if any(ch.isspace() for ch in raw):
        raise refuse("contains spaces")
    parts = urlsplit(raw)
    if parts.scheme not in ("https", "http"):
        raise refuse("must start with https://")
    host = (parts.hostname or "").lower()
    if not host:
        raise refuse("has no host name")
    if parts.scheme == "http" and host not in LOOPBACK:
        raise refuse(
            "must use https://: Kommo runs over HTTPS and browsers block its pages from calling plain "
            "http:// addresses (http:// is accepted only for localhost, in development)"
        )
    if parts.username is not None or parts.password is not None:
        raise refuse("must not carry a user name or password")
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise refuse("must not have a query (?…) or a fragment (#…)")
    if host not in LOOPBACK and not HOST.match(host):
        raise refuse("has a host name the widget cannot use (write an international name in its xn-- form)")
    try:
        port = parts.port
    except ValueError:
        raise refuse("has an invalid port") from None
    path = parts.path.rstrip("/")
    if "settings" in path.split("/"):
        raise refuse("points into the settings window, not at the bridge: drop the /settings part")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}{path}"


def support_contact(link: str | None, email: str | None, public_url: str) -> tuple[dict[str, str], list[str]]:
    """The manifest's `widget.support` and any warning about it."""
    support: dict[str, str] = {}
    warnings: list[str] = []
    link, email = (link or "").strip(), (email or "").strip()
    if link:
        parts = urlsplit(link)
        if parts.scheme != "https" or not parts.hostname:
            raise WidgetBuildError(f"BRIDGE_SUPPORT_URL={link!r} must be an https:// address of your support page")
        support["link"] = link
    if email:
        if not EMAIL.match(email):
            raise WidgetBuildError(f"BRIDGE_SUPPORT_EMAIL={email!r} is not an e-mail address")
        support["email"] = email
    if not support:
        support["link"] = public_url
        warnings.append(
            f"no support contact given, so the widget names {public_url}; the marketplace wants your own "
            "support page or e-mail: set BRIDGE_SUPPORT_URL and/or BRIDGE_SUPPORT_EMAIL"
        )
    return support, warnings


def clean_text(data: bytes, name: str) -> str:
    """UTF-8 text without BOM, with LF line endings, ending in a newline."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WidgetBuildError(f"widget/{name} is not UTF-8 ({exc})") from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def read_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WidgetBuildError(f"widget/{name} is not valid JSON: {exc}") from None


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2) + "\n"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """`{"a": {"b": "x"}}` → ("a.b", "x")."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def manifest_keys(manifest: Mapping[str, Any]) -> set[str]:
    """The i18n keys the manifest's texts name."""
    widget = manifest.get("widget", {})
    keys = {widget.get(name) for name in ("name", "description", "short_description")}
    keys.add(manifest.get("tour", {}).get("tour_description"))
    keys.update(spec.get("name") for spec in manifest.get("settings", {}).values())
    keys.add(manifest.get("advanced", {}).get("title"))
    return {key for key in keys if isinstance(key, str)}


def check_script(script: str) -> None:
    for pattern, what in FORBIDDEN.items():
        match = re.search(pattern, script)
        if match:
            line = script.count("\n", 0, match.start()) + 1
            raise WidgetBuildError(f"widget/script.js:{line} uses {what}, which Kommo's moderation rejects")


def check_languages(manifest: Mapping[str, Any], languages: Mapping[str, Mapping[str, Any]], script: str) -> None:
    locales = manifest.get("widget", {}).get("locale", [])
    if sorted(locales) != sorted(languages):
        raise WidgetBuildError(f"widget.locale lists {locales} but widget/i18n has {sorted(languages)}")
    needed = manifest_keys(manifest) | set(SCRIPT_KEY.findall(script))
    reference: set[str] | None = None
    for lang, tree in sorted(languages.items()):
        texts = dict(flatten(tree))
        empty = sorted(key for key, value in texts.items() if not isinstance(value, str) or not value.strip())
        if empty:
            raise WidgetBuildError(f"widget/i18n/{lang}.json has empty or non-text values: {', '.join(empty)}")
        missing = sorted(needed - texts.keys())
        if missing:
            raise WidgetBuildError(f"widget/i18n/{lang}.json lacks {', '.join(missing)}")
        if reference is not None and set(texts) != reference:
            differ = sorted(set(texts) ^ reference)
            raise WidgetBuildError(f"widget/i18n/{lang}.json and the other languages differ in {', '.join(differ)}")
        reference = set(texts)


def fill_script(script: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise WidgetBuildError(f"widget/script.js has a placeholder the build does not know: @{name}@")
        return js_string(values[name])

    return PLACEHOLDER.sub(replace, script)


def js_string(value: str) -> str:
    """A single-quoted JavaScript string literal (the script's own quoting style)."""
    escaped = json.dumps(value)[1:-1].replace('\\"', '"').replace("'", "\\'")
    return f"'{escaped}'"


def build_widget(
    output: Path = OUTPUT,
    *,
    public_url: str | None = None,
    support_url: str | None = None,
    support_email: str | None = None,
    version: str | None = None,
    source: Path = SOURCE,
    environ: Mapping[str, str] | None = None,
) -> Built:
    """Builds the archive at `output`; arguments left out come from the environment (`BRIDGE_PUBLIC_URL`,
    `BRIDGE_SUPPORT_URL`, `BRIDGE_SUPPORT_EMAIL`, `WIDGET_VERSION`)."""
    env = os.environ if environ is None else environ
    address = public_address(public_url or env.get("BRIDGE_PUBLIC_URL"))
    support, warnings = support_contact(
        support_url or env.get("BRIDGE_SUPPORT_URL"), support_email or env.get("BRIDGE_SUPPORT_EMAIL"), address
    )

    def read(name: str) -> str:
        path = source / name
        if not path.is_file():
            raise WidgetBuildError(f"widget source {path} is missing")
        return clean_text(path.read_bytes(), name)

    manifest = read_json(read("manifest.json"), "manifest.json")
    version = (version or env.get("WIDGET_VERSION") or manifest["widget"].get("version", "")).strip()
    if not VERSION.match(version):
        raise WidgetBuildError(f"the widget version {version!r} must look like 1.2.3")
    manifest["widget"]["version"] = version
    manifest["widget"]["support"] = support

    languages = {
        path.stem: read_json(read(f"i18n/{path.name}"), f"i18n/{path.name}")
        for path in sorted((source / "i18n").glob("*.json"))
    }
    script = read("script.js")
    check_script(script)
    check_languages(manifest, languages, script)
    values = {"BRIDGE_PUBLIC_URL": address, "SUPPORT_LINK": support.get("link", "")}
    script = fill_script(script, {**values, "SUPPORT_EMAIL": support.get("email", "")})

    images = art.images()
    for lang, paths in manifest.get("tour", {}).get("tour_images", {}).items():
        for image in paths:
            if image.removeprefix("/images/") not in images:
                raise WidgetBuildError(f"tour.tour_images.{lang} names {image}, which the build does not draw")
    for name, png in images.items():
        if len(png) > MAX_IMAGE_BYTES:
            raise WidgetBuildError(f"images/{name} is {len(png)} bytes, over Kommo's 300 KB limit")

    files: dict[str, bytes] = {
        "manifest.json": dump_json(manifest).encode(),
        "script.js": script.encode(),
        "style.css": read("style.css").encode(),
    }
    files.update({f"i18n/{lang}.json": dump_json(tree).encode() for lang, tree in languages.items()})
    files.update({f"images/{name}": png for name, png in sorted(images.items())})

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(buffer.getvalue())
    partial.replace(output)
    return Built(output, address, list(files), len(buffer.getvalue()), warnings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make widget", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--public-url", help="the bridge's public address (default: $BRIDGE_PUBLIC_URL)")
    parser.add_argument("--support-url", help="your support page (default: $BRIDGE_SUPPORT_URL)")
    parser.add_argument("--support-email", help="your support e-mail (default: $BRIDGE_SUPPORT_EMAIL)")
    parser.add_argument("--widget-version", help="x.y.z (default: $WIDGET_VERSION, else widget/manifest.json)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write it (default: {OUTPUT})")
    args = parser.parse_args(argv)
    try:
        built = build_widget(
            args.output,
            public_url=args.public_url,
            support_url=args.support_url,
            support_email=args.support_email,
            version=args.widget_version,
        )
    except WidgetBuildError as exc:
        print(f"make widget: {exc}", file=sys.stderr)
        return 2
    for warning in built.warnings:
        print(f"make widget: warning: {warning}", file=sys.stderr)
    print(
        f"{built.path}: {len(built.names)} files, {built.size // 1024} KB; the widget opens the settings window "
        f"through {built.public_url}{SESSION_PATH}.\nUpload it in Kommo: Settings → Integrations → your "
        "integration → Upload widget (raise the version with WIDGET_VERSION=x.y.z for every new upload)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
