"""Typed reads of a platform's webhook JSON, naming the exact field of anything malformed.

A webhook body is untrusted input: every field a translation uses is read through here, so a wrong type
becomes a BadRequestError (400, nothing published) that says which field and what came instead, never a
KeyError or a TypeError deep in the translation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from libs.errors import BadRequestError


def type_name(value: object) -> str:
    """What a JSON value is, as an error message says it."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class PayloadReader:
    """Reads of one payload; errors start with `prefix` (which payload: "telegram update 7")."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def fail(self, path: str, expected: str, value: object) -> BadRequestError:
        return BadRequestError(f"{self.prefix}: {path} must be {expected}, got {type_name(value)}")

    def obj(self, parent: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        value = parent.get(key)
        if not isinstance(value, dict):
            raise self.fail(f"{path}.{key}", "an object", value)
        return value

    def list_(self, parent: Mapping[str, Any], key: str, path: str) -> list[Any]:
        """An array; [] when absent."""
        value = parent.get(key, [])
        if not isinstance(value, list):
            raise self.fail(f"{path}.{key}", "an array", value)
        return value

    def int_(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool = True) -> int:
        """An integer; 0 when absent and not `required`."""
        value = parent.get(key)
        if value is None and not required:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{path}.{key}", "an integer", value)
        return value

    def float_(self, parent: Mapping[str, Any], key: str, path: str) -> float:
        value = parent.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{path}.{key}", "a number", value)
        return float(value)

    def str_(self, parent: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str:
        """A string; "" when absent and not `required`."""
        value = parent.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str):
            raise self.fail(f"{path}.{key}", "a string", value)
        return value

    def nonempty_str(self, parent: Mapping[str, Any], key: str, path: str) -> str:
        """A string that must be there and hold something."""
        value = parent.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(f"{path}.{key}", "a non-empty string", value)
        return value
