"""How each kind of setting is read from the environment (gateway/settings.py declares which
kind each setting is): one method per kind, (variable, default, options) -> value, or a
SettingsError that names the variable."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from gateway.aliases import alias_refusal
from gateway.webhooks.policy import IPNetwork, parse_networks
from gateway.webhooks.signing import signing_key

_T = TypeVar("_T")


class SettingsError(ValueError):
    """A variable has a value the gateway cannot start with; the message names it."""


# RFC 6750's b64token: what may follow "Bearer " in an Authorization header, ASCII only.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_ORIGIN = re.compile(r"https?://[^/?#@\s]+", re.IGNORECASE)


@dataclass(frozen=True)
class _Reader:
    """One method per kind of setting: (variable, default, options) -> value or SettingsError."""

    environ: Mapping[str, str]

    def text(self, name: str, default: str) -> str:
        value = self.environ.get(name, default).strip()
        if not value:
            raise SettingsError(f"{name} must not be empty")
        return value

    def optional_text(self, name: str, default: None) -> str | None:
        return self.environ.get(name, "").strip() or default

    def alias(self, name: str, default: str) -> str:
        value = self.text(name, default)
        refusal = alias_refusal(value)
        if refusal:
            raise SettingsError(f"{name}: {refusal}")
        return value

    def optional_alias(self, name: str, default: None) -> str | None:
        value = self.environ.get(name, "").strip()
        return self.alias(name, value) if value else default

    def fraction(self, name: str, default: float) -> float:
        value = self._parsed(name, float, "a number from 0 to 1")
        if value is None:
            return default
        if not 0 <= value <= 1:
            raise SettingsError(f"{name} must be a number from 0 to 1, got {self.environ[name]!r}")
        return value

    def callback_secret(self, name: str, default: None) -> str | None:
        value = self.environ.get(name) or default
        if value is not None:
            try:
                signing_key(value)
            except ValueError as e:
                raise SettingsError(f"{name}: {e}") from None
        return value

    def bearer_token(self, name: str, default: None) -> str | None:
        value = self.environ.get(name) or default
        if value is not None and not _B64TOKEN.fullmatch(value):
            raise SettingsError(
                f"{name} must be a bearer token: ASCII letters, digits and -._~+/ "
                "(then optional '=' padding), with no spaces"
            )
        return value

    def origins(self, name: str, default: frozenset[str]) -> frozenset[str]:
        origins = frozenset(re.split(r"[\s,]+", self.environ.get(name, "").strip())) - {""}
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise SettingsError(
                    f"{name} must be comma-separated origins such as https://gateway.example.com "
                    f"(scheme://host[:port], no path), got {origin!r}"
                )
        return frozenset(origin.lower() for origin in origins) or default

    def port(self, name: str, default: int | None) -> int | None:
        value = self._parsed(name, int, "a port number")
        if value is None:
            return default
        if not 1 <= value <= 65535:
            raise SettingsError(f"{name} must be a port from 1 to 65535, got {value}")
        return value

    def file_mode(self, name: str, default: int) -> int:
        value = self._parsed(name, lambda text: int(text, 8), "an octal file mode such as 600")
        if value is None:
            return default
        if not 0 <= value <= 0o777:
            raise SettingsError(f"{name} must be an octal file mode from 000 to 777")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.environ.get(name, default).strip().lower()
        if value not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        return self.choice(name, str(default).lower(), ("true", "false")) == "true"

    def networks(self, name: str, default: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
        try:
            return parse_networks(self.environ.get(name, "")) or default
        except ValueError as e:
            raise SettingsError(f"{name} must be comma-separated CIDRs: {e}") from None

    def integer(self, name: str, default: int, minimum: int) -> int:
        value = self._parsed(name, int, "an integer")
        if value is None:
            return default
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        return value

    def number(
        self, name: str, default: float, positive: bool = False, unit: str = "seconds"
    ) -> float:
        value = self._parsed(name, float, f"a number of {unit}")
        if value is None:
            return default
        if not value >= 0 or not math.isfinite(value) or (positive and value == 0):
            bound = "greater than 0" if positive else "0 or more"
            raise SettingsError(
                f"{name} must be a finite number {bound}, got {self.environ[name]!r}"
            )
        return value

    def _parsed(self, name: str, parse: Callable[[str], _T], what: str) -> _T | None:
        """The variable read by `parse`, None when unset; SettingsError naming it otherwise."""
        raw = self.environ.get(name)
        if raw is None:
            return None
        try:
            return parse(raw.strip())
        except ValueError:
            raise SettingsError(f"{name} must be {what}, got {raw!r}") from None
