"""Declarations of plugin form fields: type, default, range, and how a value goes on the wire.

Every check runs before anything is sent and raises ``ConfigurationError`` naming the plugin and field.
The CLI builds its options from the same declarations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import cast

from cl_client._exceptions import ConfigurationError

#: A value as it goes into the form (``form_value`` encodes bools, lists and dicts).
WireValue = bool | int | float | str | list[dict[str, int]]


def _bad(field: Field, message: str) -> ConfigurationError:
    return ConfigurationError(f"{field.name}: {message}")


@dataclass(frozen=True)
class Field:
    """A form field of a plugin route.

    Attributes:
        name: the form field name (as PROTOCOL.md names it).
        help: one line for docs and ``--help``.
        required: the server rejects a request without it.
    """

    name: str
    help: str = ""
    required: bool = False

    @property
    def default(self) -> WireValue | None:
        """The value used when none is given (None = the field is left out)."""
        return None

    def check(self, value: object) -> WireValue | None:
        """Validate and normalise ``value`` (None = the default).

        Returns:
            The wire value, or None to leave the field out.

        Raises:
            ConfigurationError: wrong type or out of range.
        """
        if value is None:
            if self.required:
                raise _bad(self, "is required")
            return self.default
        return self._check(value)

    def _check(self, value: object) -> WireValue:  # pragma: no cover - every field overrides it
        raise NotImplementedError

    def describe(self) -> str:
        """Type, range and default in words (for help texts)."""
        return self.help


@dataclass(frozen=True)
class BoolField(Field):
    """A boolean form field (sent as ``true``/``false``)."""

    value_default: bool = False

    @property
    def default(self) -> WireValue | None:
        """The default value."""
        return self.value_default

    def _check(self, value: object) -> WireValue:
        if not isinstance(value, bool):
            raise _bad(self, f"must be True or False, got {value!r}")
        return value

    def describe(self) -> str:
        """Help text with the default."""
        return f"{self.help} (default: {'true' if self.value_default else 'false'})"


@dataclass(frozen=True)
class IntField(Field):
    """An integer form field with an inclusive range; ``value_default`` None = optional and left out."""

    value_default: int | None = None
    minimum: int | None = None
    maximum: int | None = None

    @property
    def default(self) -> WireValue | None:
        """The default value."""
        return self.value_default

    def _check(self, value: object) -> WireValue:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(self, f"must be an integer, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise _bad(self, f"must be >= {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise _bad(self, f"must be <= {self.maximum}, got {value}")
        return value

    def describe(self) -> str:
        """Help text with range and default."""
        lo = "" if self.minimum is None else str(self.minimum)
        hi = "" if self.maximum is None else str(self.maximum)
        rng = f"{lo}..{hi}" if lo or hi else "integer"
        default = "none" if self.value_default is None else str(self.value_default)
        return f"{self.help} ({rng}, default: {default})"


@dataclass(frozen=True)
class FloatField(Field):
    """A float form field with an inclusive range."""

    value_default: float = 0.0
    minimum: float = 0.0
    maximum: float = 1.0

    @property
    def default(self) -> WireValue | None:
        """The default value."""
        return self.value_default

    def _check(self, value: object) -> WireValue:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(self, f"must be a number, got {value!r}")
        number = float(value)
        if math.isnan(number) or not self.minimum <= number <= self.maximum:
            raise _bad(self, f"must be between {self.minimum:g} and {self.maximum:g}, got {value!r}")
        return number

    def describe(self) -> str:
        """Help text with range and default."""
        return f"{self.help} ({self.minimum:g}..{self.maximum:g}, default: {self.value_default:g})"


@dataclass(frozen=True)
class ChoiceField(Field):
    """One of a fixed set of strings (compared case-insensitively, sent lower-case)."""

    choices: tuple[str, ...] = ()
    value_default: str | None = None

    @property
    def default(self) -> WireValue | None:
        """The default value."""
        return self.value_default

    def _check(self, value: object) -> WireValue:
        if not isinstance(value, str) or value.strip().lower() not in self.choices:
            raise _bad(self, f"must be one of {', '.join(self.choices)}; got {value!r}")
        return value.strip().lower()

    def describe(self) -> str:
        """Help text with the choices and default."""
        default = "" if self.value_default is None else f", default: {self.value_default}"
        return f"{self.help} ({'|'.join(self.choices)}{default})"


@dataclass(frozen=True)
class ServerPathField(Field):
    """An absolute path *on the server* (upstream's February 2026 ``hls_streaming`` fields); None = left out.

    The client cannot check that the path exists; it checks that it is an absolute path (POSIX or Windows)
    without NUL characters, since a relative one would be resolved against the worker's working folder.
    """

    def _check(self, value: object) -> WireValue:
        if not isinstance(value, str) or not value.strip():
            raise _bad(self, f"must be an absolute path on the server (a non-empty string), got {value!r}")
        if "\x00" in value:
            raise _bad(self, "must not contain NUL characters")
        if not (PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute()):
            raise _bad(self, f"must be an absolute path on the server, got the relative path {value!r}")
        return value

    def describe(self) -> str:
        """Help text."""
        return f"{self.help} (absolute; default: not sent)"


@dataclass(frozen=True)
class TagsField(Field):
    """ExifTool tag names: a comma-separated string or a list of names; empty = every tag."""

    def check(self, value: object) -> WireValue | None:
        """Validate tags; None and empty mean "all tags" (sent as ``""``)."""
        if value is None:
            return ""
        return self._check(value)

    def _check(self, value: object) -> WireValue:
        if isinstance(value, str):
            names = [part.strip() for part in value.split(",")]
        elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
            names: list[str] = []
            for item in cast(Iterable[object], value):
                if not isinstance(item, str):
                    raise _bad(self, f"tag names must be strings, got {item!r}")
                names.append(item.strip())
        else:
            raise _bad(self, f"must be a comma-separated string or a list of tag names, got {value!r}")
        names = [n for n in names if n]
        for name in names:
            if "," in name or any(c.isspace() for c in name) or name.startswith("-"):
                raise _bad(self, f"invalid tag name {name!r}")
        return ",".join(names)

    def describe(self) -> str:
        """Help text."""
        return f"{self.help} (comma-separated; default: all tags)"


@dataclass(frozen=True)
class HlsVariant:
    """One HLS rendition: the output height in pixels and the video bitrate in kbit/s.

    Attributes:
        resolution: height in pixels (e.g. 720).
        bitrate: video bitrate in kbit/s (e.g. 3500).
    """

    resolution: int
    bitrate: int

    @classmethod
    def parse(cls, text: str) -> HlsVariant:
        """Parse ``"720:3500"`` (or ``720p:3500k``).

        Raises:
            ConfigurationError: not ``HEIGHT:KBPS``.
        """
        parts = text.strip().lower().replace("p", "").replace("k", "").split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ConfigurationError(f"variant must look like HEIGHT:KBPS (e.g. 720:3500), got {text!r}")
        return cls(int(parts[0]), int(parts[1]))

    def as_wire(self) -> dict[str, int]:
        """The JSON object the server expects."""
        return {"resolution": self.resolution, "bitrate": self.bitrate}


DEFAULT_VARIANTS = (HlsVariant(720, 3500), HlsVariant(480, 1500))


@dataclass(frozen=True)
class VariantsField(Field):
    """HLS variants: a list of ``HlsVariant``, ``(height, kbps)`` pairs, dicts or ``"720:3500"`` strings."""

    minimum_resolution: int = 16
    maximum_resolution: int = 4320
    minimum_bitrate: int = 100
    maximum_bitrate: int = 100_000
    maximum_count: int = 16

    @property
    def default(self) -> WireValue | None:
        """The server's default: 720p at 3500k and 480p at 1500k."""
        return [v.as_wire() for v in DEFAULT_VARIANTS]

    def _one(self, index: int, item: object) -> HlsVariant:
        if isinstance(item, HlsVariant):
            variant = item
        elif isinstance(item, str):
            variant = HlsVariant.parse(item)
        elif isinstance(item, Mapping):
            entry = cast(Mapping[str, object], item)
            res, rate = entry.get("resolution"), entry.get("bitrate")
            if isinstance(res, bool) or isinstance(rate, bool) or not isinstance(res, int) or not isinstance(rate, int):
                raise _bad(self, f"variants[{index}] needs integer 'resolution' and 'bitrate', got {item!r}")
            variant = HlsVariant(res, rate)
        elif isinstance(item, Sequence) and len(cast(Sequence[object], item)) == 2:
            pair = cast(Sequence[object], item)
            res, rate = pair[0], pair[1]
            if isinstance(res, bool) or isinstance(rate, bool) or not isinstance(res, int) or not isinstance(rate, int):
                raise _bad(self, f"variants[{index}] must be (height, kbps) integers, got {item!r}")
            variant = HlsVariant(res, rate)
        else:
            raise _bad(self, f"variants[{index}] must be an HlsVariant, (height, kbps), a dict or 'H:KBPS'")
        if not self.minimum_resolution <= variant.resolution <= self.maximum_resolution:
            raise _bad(
                self,
                f"variants[{index}].resolution must be between {self.minimum_resolution} and "
                f"{self.maximum_resolution}, got {variant.resolution}",
            )
        if not self.minimum_bitrate <= variant.bitrate <= self.maximum_bitrate:
            raise _bad(
                self,
                f"variants[{index}].bitrate must be between {self.minimum_bitrate} and {self.maximum_bitrate} "
                f"kbit/s, got {variant.bitrate}",
            )
        return variant

    def _check(self, value: object) -> WireValue:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            raise _bad(self, f"must be a list of variants, got {value!r}")
        variants = [self._one(i, item) for i, item in enumerate(cast(Iterable[object], value))]
        if not variants:
            raise _bad(self, "needs at least one variant")
        if len(variants) > self.maximum_count:
            raise _bad(self, f"at most {self.maximum_count} variants are allowed")
        if len(set(variants)) != len(variants):
            raise _bad(self, "repeats a variant")
        return [v.as_wire() for v in variants]

    def describe(self) -> str:
        """Help text."""
        return f"{self.help} (HEIGHT:KBPS, repeatable; default: 720:3500 and 480:1500)"
