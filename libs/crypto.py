"""Secrets at rest: AES-256-GCM under a keyring (newest key first), the key id stored beside each
ciphertext so old rows stay readable until they are re-encrypted under the newest key."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from libs.config import ConfigError, parse_master_keys
from libs.errors import PermanentError

NONCE_BYTES = 12


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class Keyring:
    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigError("BRIDGE_MASTER_KEYS holds no key")
        self._current_id = keys[0][0]
        self._keys = {key_id: AESGCM(key) for key_id, key in keys}

    @property
    def current_key_id(self) -> str:
        return self._current_id

    def seal(self, plaintext: str, context: str) -> Sealed:
        """Encrypt under the newest key; `context` (e.g. owner|kind) is bound as associated data so a
        ciphertext copied to another row does not decrypt."""
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._keys[self._current_id].encrypt(nonce, plaintext.encode(), context.encode())
        return Sealed(self._current_id, nonce, ciphertext)

    def open(self, sealed: Sealed, context: str) -> str:
        aead = self._keys.get(sealed.key_id)
        if aead is None:
            raise PermanentError(f"secret is encrypted under unknown key id {sealed.key_id!r}")
        try:
            return aead.decrypt(sealed.nonce, sealed.ciphertext, context.encode()).decode()
        except Exception as exc:
            raise PermanentError("secret failed authentication (wrong key or tampered row)") from exc


def generate_key_spec(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def load_or_create_dev_keys(data_dir: Path) -> str:
    """Development only: a keyring generated once into the data folder (mode 0600)."""
    path = data_dir / "master_keys"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    spec = generate_key_spec("k1")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(spec)
    parse_master_keys(spec)
    return spec
