"""`make widget`: the archive Kommo's marketplace takes (reference §12), checked from the zip itself.

The archive is built into a temporary directory and read back: the manifest's required fields, the
three languages, the logos' exact sizes (from each PNG's own header, with every chunk's CRC checked),
clean text files, the moderation rules for script.js and style.css, and the build's refusals.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from libs.widget import build
from libs.widget.build import WidgetBuildError, build_widget

PUBLIC_URL = "https://bridge.example.com"
LANGUAGES = ("en", "es", "pt")
LOGOS = {
    "images/logo.png": (130, 100),
    "images/logo_main.png": (400, 272),
    "images/logo_small.png": (108, 108),
    "images/logo_medium.png": (240, 84),
    "images/logo_min.png": (84, 84),
}
TOUR_SIZE = (1188, 616)
LOCATIONS = {  # §12, with and without the right-column suffix
    "lcard", "ccard", "comcard", "cucard", "llist", "clist", "culist", "tlist", "settings",
    "advanced_settings", "card_sdk", "catalogs", "digital_pipeline", "lead_sources", "whatsapp_modal",
    "everywhere", "sms", "mobile_card", "amoforms", "salesbot_designer",
}  # fmt: skip
SETTING_TYPES = {"text", "pass", "users", "users_lp", "custom"}
ROOT_CLASS = ".messenger-bridge-widget"


# Reading the archive -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> build.Built:
    output = tmp_path_factory.mktemp("widget") / "widget.zip"
    return build_widget(output, public_url=PUBLIC_URL, support_email="help@example.com", environ={})


@pytest.fixture(scope="module")
def files(built: build.Built) -> dict[str, bytes]:
    with zipfile.ZipFile(built.path) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


@pytest.fixture(scope="module")
def manifest(files: dict[str, bytes]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(files["manifest.json"])
    return value


@pytest.fixture(scope="module")
def languages(files: dict[str, bytes]) -> dict[str, dict[str, str]]:
    return {lang: dict(_flatten(json.loads(files[f"i18n/{lang}.json"]))) for lang in LANGUAGES}


@pytest.fixture(scope="module")
def script(files: dict[str, bytes]) -> str:
    return files["script.js"].decode()


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, unfiltered pixel rows) of an 8-bit RGB/RGBA PNG, checking
    the signature, every chunk's CRC and the image data's length."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: list[tuple[bytes, bytes]] = []
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        offset += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and color in (2, 6) and interlace == 0
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * bpp
    assert len(raw) == height * (stride + 1)
    rows = bytearray()
    previous = bytearray(stride)
    for y in range(height):
        method, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride if method else 0):  # filter 0 leaves the row as it is
            a = line[i - bpp] if i >= bpp else 0
            b, c = previous[i], previous[i - bpp] if i >= bpp else 0
            if method == 1:
                line[i] = (line[i] + a) & 0xFF
            elif method == 2:
                line[i] = (line[i] + b) & 0xFF
            elif method == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif method == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
            else:
                assert method == 0, f"unknown PNG filter {method}"
        rows += line
        previous = line
    return width, height, bpp, bytes(rows)


# The archive -------------------------------------------------------------------------------------


def test_the_files_sit_at_the_archive_root(files: dict[str, bytes]) -> None:
    names = set(files)
    assert {"manifest.json", "script.js", "style.css"} <= names
    assert {f"i18n/{lang}.json" for lang in LANGUAGES} <= names
    assert set(LOGOS) <= names
    for name in names:  # no wrapping folder, nothing absolute or outside, no stray files
        assert not name.startswith(("/", "widget/")) and ".." not in name and not name.endswith("/")
        assert name.split("/")[0] in {"manifest.json", "script.js", "style.css", "i18n", "images"}


def test_the_manifest_has_every_required_field(manifest: dict[str, Any]) -> None:
    widget = manifest["widget"]
    for key in ("name", "description", "short_description"):
        assert isinstance(widget[key], str) and widget[key].startswith("widget.")
    assert sorted(widget["locale"]) == sorted(LANGUAGES)
    assert widget["installation"] is True
    assert re.fullmatch(r"\d+\.\d+\.\d+", widget["version"])
    assert widget["interface_version"] == 2
    assert isinstance(widget["init_once"], bool)
    assert widget["support"] == {"email": "help@example.com"}
    tour = manifest["tour"]
    assert tour["is_tour"] is True
    assert tour["tour_description"] == "widget.tour_description"
    assert set(tour["tour_images"]) == set(LANGUAGES)


def test_the_widget_is_a_chat_source_and_opens_settings(manifest: dict[str, Any]) -> None:
    locations = manifest["locations"]
    assert {"settings", "lead_sources", "whatsapp_modal", "advanced_settings"} <= set(locations)
    assert all(re.sub(r"-[01]$", "", location) in LOCATIONS for location in locations)
    assert manifest["advanced"]["title"] == "advanced.title"  # the advanced settings page's title
    assert manifest["settings"]["bridge_url"] == {"name": "settings.bridge_url", "type": "text", "required": True}
    assert all(spec["type"] in SETTING_TYPES for spec in manifest["settings"].values())


def test_the_tour_pictures_are_in_the_archive_at_the_marketplace_size(
    manifest: dict[str, Any], files: dict[str, bytes]
) -> None:
    for lang, paths in manifest["tour"]["tour_images"].items():
        assert paths, lang
        for path in paths:
            data = files[path.removeprefix("/")]
            assert _png(data)[:2] == TOUR_SIZE
            assert len(data) <= 300 * 1024


# Languages ---------------------------------------------------------------------------------------


def test_every_text_the_manifest_names_exists_in_every_language(
    manifest: dict[str, Any], languages: dict[str, dict[str, str]]
) -> None:
    widget = manifest["widget"]
    named = {widget["name"], widget["description"], widget["short_description"]}
    named |= {manifest["tour"]["tour_description"], manifest["advanced"]["title"]}
    named |= {spec["name"] for spec in manifest["settings"].values()}
    for lang, texts in languages.items():
        assert named <= texts.keys(), (lang, named - texts.keys())
        assert all(isinstance(texts[key], str) and texts[key].strip() for key in named), lang


def test_the_languages_have_the_same_keys_and_are_translated(languages: dict[str, dict[str, str]]) -> None:
    en, es, pt = (languages[lang] for lang in LANGUAGES)
    assert en.keys() == es.keys() == pt.keys()
    assert all(isinstance(value, str) and value.strip() for texts in languages.values() for value in texts.values())
    # Brand names may stay as they are; every sentence is in its own language.
    sentences = [key for key, value in en.items() if len(value.split()) > 3]
    assert len(sentences) >= 10
    for key in sentences:
        assert es[key] != en[key] and pt[key] != en[key] and es[key] != pt[key], key
    assert "el puente" in " ".join(es.values()).lower() and "a ponte" in " ".join(pt.values()).lower()
    for texts in languages.values():  # marketplace: no .ru domains in the EN/ES/PT listings
        assert not any(re.search(r"\.ru\b", value) for value in texts.values())


def test_the_listing_texts_fit_the_marketplace_limits(languages: dict[str, dict[str, str]]) -> None:
    for lang, texts in languages.items():
        assert len(texts["widget.name"]) <= 30, lang
        assert len(texts["widget.short_description"]) <= 60, lang
        assert len(re.sub(r"<[^>]+>", "", texts["widget.description"])) <= 400, lang
        assert "kommo" not in texts["widget.name"].lower()  # the platform's name is not ours to use


def test_every_text_the_script_uses_exists_in_every_language(script: str, languages: dict[str, dict[str, str]]) -> None:
    used = set(re.findall(r"\bt\('([^']+)'\)", script))
    assert {"ui.loading", "ui.open", "ui.errors.unreachable", "ui.errors.contact"} <= used
    for lang, texts in languages.items():
        assert used <= texts.keys(), (lang, used - texts.keys())


# Images ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "size"), LOGOS.items())
def test_each_logo_has_the_exact_size_and_shows_the_mark(
    files: dict[str, bytes], name: str, size: tuple[int, int]
) -> None:
    data = files[name]
    assert len(data) <= 300 * 1024
    width, height, bpp, pixels = _png(data)
    assert (width, height) == size
    colors = {pixels[i : i + 3] for i in range(0, len(pixels), bpp)}
    assert pixels[:3] == bytes((0xF6, 0xF8, 0xFC))  # the clean background, corner to corner
    assert pixels[-bpp:][:3] == bytes((0xF6, 0xF8, 0xFC))
    for ink in ((0x1E, 0x2B, 0x4F), (0x2F, 0x6B, 0xFF), (0x14, 0xB8, 0xA6), (0xFF, 0xFF, 0xFF)):
        assert bytes(ink) in colors, (name, ink)  # the bridge, both bubbles, the dots and lines


# Text files --------------------------------------------------------------------------------------


def test_text_files_are_utf8_without_bom_with_lf_endings(files: dict[str, bytes]) -> None:
    texts = [name for name in files if not name.endswith(".png")]
    assert len(texts) == 6
    for name in texts:
        data = files[name]
        assert not data.startswith(b"\xef\xbb\xbf"), name
        assert b"\r" not in data, name
        assert data.endswith(b"\n"), name
        data.decode("utf-8")
        if name.endswith(".json"):
            json.loads(data)


def test_the_build_cleans_a_bom_and_crlf_from_the_sources(tmp_path: Path) -> None:
    source = tmp_path / "widget"
    shutil.copytree(build.SOURCE, source)
    for name in ("script.js", "style.css", "i18n/es.json", "manifest.json"):
        path = source / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    result = build_widget(tmp_path / "widget.zip", public_url=PUBLIC_URL, source=source, environ={})
    with zipfile.ZipFile(result.path) as archive:
        for name in ("script.js", "style.css", "i18n/es.json", "manifest.json"):
            data = archive.read(name)
            assert not data.startswith(b"\xef\xbb\xbf") and b"\r" not in data, name


# script.js and style.css -------------------------------------------------------------------------


def test_the_script_has_none_of_what_moderation_rejects(script: str) -> None:
    code = re.sub(r"/\*.*?\*/|(?<![:\\])//[^\n]*", "", script, flags=re.DOTALL)  # comments may name anything
    assert not re.search(r"\beval\s*\(|\bnew\s+Function\s*\(", code)
    assert not re.search(r"\basync\s*:\s*false", code)
    assert not re.search(r"\b(alert|confirm|prompt)\s*\(", code)
    assert not re.search(r"\bconsole\s*\.", code)
    assert not re.search(r"\bdebugger\b|\bsetInterval\s*\(|document\.write|createElement\(\s*['\"]script", code)
    # reads nothing undocumented from Kommo's globals (APP.lang_id is the user's language), changes none
    assert set(re.findall(r"\bAPP\.\w+", code)) <= {"APP.lang_id"}
    assert not re.search(r"\bAPP(\.\w+)*\s*=(?!=)", code)
    # one request, built from the bridge's address, asynchronous, with a timeout
    assert code.count("$authorizedAjax(") == 1
    assert re.search(r"\$authorizedAjax\(\{\s*url: bridge \+ SESSION_PATH,\s*type: 'POST',", code)
    assert re.search(r"timeout: REQUEST_TIMEOUT_MS", code)
    # its body names the user's language and nothing else
    assert re.search(r"contentType: 'application/json',\s*data: JSON\.stringify\(\{ lang: userLanguage\(\) \}\),", code)
    assert not re.search(r"\b(for|while)\s*\([^)]*\)\s*\{[^}]*\$authorizedAjax", code, flags=re.DOTALL)


def test_the_script_is_a_kommo_widget_module(script: str) -> None:
    assert re.search(r"^define\(\['jquery'(, '[^']+')*\], function \(\$", script, flags=re.MULTILINE)
    assert re.search(r"return CustomWidget;\n\}\);\n$", script)
    for callback in ("render", "init", "bind_actions", "settings", "onSave", "destroy", "advancedSettings"):
        assert re.search(rf"\n\s+{callback}: function \(", script), callback
    for callback in ("render", "init", "bind_actions"):  # Kommo stops the widget unless these say true
        body = script.split(f"{callback}: function ()", 1)[1].split("},", 1)[0]
        assert "return true;" in body, callback
    lines = script.splitlines()  # readable, not minified
    assert len(lines) > 150 and max(len(line) for line in lines) <= 120
    assert "'use strict';" in script


def test_the_public_url_is_built_into_the_script(script: str) -> None:
    assert f"var BUILT_BRIDGE_URL = '{PUBLIC_URL}';" in script
    assert "var SESSION_PATH = '/settings/api/session';" in script
    assert "var SUPPORT_EMAIL = 'help@example.com';" in script
    assert not re.search(r"@[A-Z_]+@", script)  # every placeholder filled
    # the script's own address check accepts what the build wrote (the JS pattern reads the same in Python)
    pattern = re.search(r"var HTTPS_ADDRESS = /(.+)/i;", script)
    assert pattern
    assert re.fullmatch(pattern.group(1).replace("\\/", "/"), PUBLIC_URL, flags=re.IGNORECASE)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_script_parses_as_javascript(files: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "script.js"
    path.write_bytes(files["script.js"])
    checked = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_the_stylesheet_changes_only_the_widget(files: dict[str, bytes], script: str) -> None:
    css = re.sub(r"/\*.*?\*/", "", files["style.css"].decode(), flags=re.DOTALL)
    assert "@import" not in css and "!important" not in css
    rules = re.findall(r"([^{}]+)\{[^{}]*\}", css)
    assert len(rules) > 10
    own = re.compile(rf"{re.escape(ROOT_CLASS)}((--|__)[a-z-]+)?($|[\s.:\[>])")
    for rule in rules:
        for selector in rule.split(","):
            assert own.match(selector.strip()), selector  # starts from the widget's own class
    assert f"var ROOT = '{ROOT_CLASS[1:]}';" in script


# The build's refusals and defaults -----------------------------------------------------------------


def test_without_a_public_url_the_build_says_what_to_set(tmp_path: Path) -> None:
    output = tmp_path / "widget.zip"
    with pytest.raises(WidgetBuildError) as refused:
        build_widget(output, environ={})
    assert "BRIDGE_PUBLIC_URL" in str(refused.value)
    assert "make widget BRIDGE_PUBLIC_URL=https://" in str(refused.value)
    assert not output.exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://bridge.example.com", "must use https://"),
        ("bridge.example.com", "must start with https://"),
        ("ftp://bridge.example.com", "must start with https://"),
        ("https://", "no host name"),
        ("https://user:secret@bridge.example.com", "user name or password"),
        ("https://bridge.example.com/?x=1", "query"),
        ("https://bridge.example.com/#top", "fragment"),
        ("https://bridge.example.com:99999", "invalid port"),
        ("https://bridge.example.com/settings/", "drop the /settings part"),
        ("https://bridge example.com", "spaces"),
        ("https://brücke.example.com", "xn--"),
    ],
)
def test_an_unusable_public_url_is_refused_with_the_reason(tmp_path: Path, url: str, reason: str) -> None:
    output = tmp_path / "widget.zip"
    with pytest.raises(WidgetBuildError, match=re.escape(reason)) as refused:
        build_widget(output, public_url=url, environ={})
    assert repr(url) in str(refused.value)
    assert not output.exists()


@pytest.mark.parametrize(
    ("url", "used"),
    [
        ("https://Bridge.Example.com/", "https://bridge.example.com"),
        ("https://example.com/bridge/", "https://example.com/bridge"),
        ("https://bridge.example.com:8443", "https://bridge.example.com:8443"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ],
)
def test_a_usable_public_url_is_written_in_its_plain_form(tmp_path: Path, url: str, used: str) -> None:
    result = build_widget(tmp_path / "widget.zip", public_url=url, environ={})
    assert result.public_url == used
    with zipfile.ZipFile(result.path) as archive:
        assert f"var BUILT_BRIDGE_URL = '{used}';" in archive.read("script.js").decode()


def test_the_public_url_comes_from_the_environment_unless_given(tmp_path: Path) -> None:
    env = {"BRIDGE_PUBLIC_URL": "https://from-env.example.com", "WIDGET_VERSION": "2.3.4"}
    from_env = build_widget(tmp_path / "a.zip", environ=env)
    assert from_env.public_url == "https://from-env.example.com"
    with zipfile.ZipFile(from_env.path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["widget"]["version"] == "2.3.4"
    assert build_widget(tmp_path / "b.zip", public_url=PUBLIC_URL, environ=env).public_url == PUBLIC_URL


def test_the_support_contact_defaults_to_the_bridge_with_a_warning(tmp_path: Path) -> None:
    result = build_widget(tmp_path / "widget.zip", public_url=PUBLIC_URL, environ={})
    with zipfile.ZipFile(result.path) as archive:
        assert json.loads(archive.read("manifest.json"))["widget"]["support"] == {"link": PUBLIC_URL}
        assert f"var SUPPORT_LINK = '{PUBLIC_URL}';" in archive.read("script.js").decode()
    assert any("BRIDGE_SUPPORT_URL" in warning for warning in result.warnings)
    with pytest.raises(WidgetBuildError, match="https://"):
        build_widget(tmp_path / "x.zip", public_url=PUBLIC_URL, support_url="http://help.example.com", environ={})
    with pytest.raises(WidgetBuildError, match="not an e-mail"):
        build_widget(tmp_path / "x.zip", public_url=PUBLIC_URL, support_email="help", environ={})
    with pytest.raises(WidgetBuildError, match=re.escape("1.2.3")):
        build_widget(tmp_path / "x.zip", public_url=PUBLIC_URL, version="v2", environ={})


def test_the_build_is_reproducible(tmp_path: Path, built: build.Built) -> None:
    again = build_widget(tmp_path / "widget.zip", public_url=PUBLIC_URL, support_email="help@example.com", environ={})
    assert again.path.read_bytes() == built.path.read_bytes()


def test_the_build_refuses_sources_moderation_would_reject(tmp_path: Path) -> None:
    source = tmp_path / "widget"
    shutil.copytree(build.SOURCE, source)
    script = (source / "script.js").read_text()
    (source / "script.js").write_text(script.replace("return true;", "alert('saved'); return true;", 1))
    with pytest.raises(WidgetBuildError, match=r"script\.js:\d+ uses alert\(\)"):
        build_widget(tmp_path / "a.zip", public_url=PUBLIC_URL, source=source, environ={})
    (source / "script.js").write_text(script)
    pt = json.loads((source / "i18n/pt.json").read_text())
    del pt["ui"]["errors"]["denied"]
    (source / "i18n/pt.json").write_text(json.dumps(pt))
    with pytest.raises(WidgetBuildError, match=r"pt\.json lacks ui\.errors\.denied"):
        build_widget(tmp_path / "b.zip", public_url=PUBLIC_URL, source=source, environ={})
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "b.zip").exists()


def test_the_command_line_fails_clearly_without_a_public_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("BRIDGE_PUBLIC_URL", raising=False)
    output = tmp_path / "widget.zip"
    assert build.main(["--output", str(output), "--public-url", ""]) == 2
    assert "make widget: " in capsys.readouterr().err
    assert not output.exists()
    assert build.main(["--output", str(output), "--public-url", PUBLIC_URL, "--support-email", "a@b.co"]) == 0
    assert "settings/api/session" in capsys.readouterr().out
    assert zipfile.is_zipfile(output)
