"""Command-line values converted without importing pydantic.

Typer (0.2x) converts every parameter through a pydantic ``TypeAdapter``,
built on first use; that imports pydantic and pydantic-core and costs more
than typer and rich together, on every command.  cronhub's parameters are
plain (``str``, ``int``/``float`` with bounds, ``Path``, an ``Enum``), so
:class:`LightCommand` gives each such parameter a small converter instead.

It fills the per-parameter converter cache Typer keeps (``_runtime_param``,
an object with ``coerce(value, *, param, ctx)``) and touches nothing else.
A parameter of any other type, or a Typer without that cache, keeps Typer's
own conversion, so a Typer upgrade can only make a command slower, never
wrong; ``test_status_does_not_import_pydantic`` notices the slowdown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

_Convert = Callable[[Any], Any]


class LightCommand(TyperCommand):
    """A Typer command whose plain parameters skip pydantic (see the module doc)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        lighten(self.get_params(ctx))  # the --help option is made per context
        return super().parse_args(ctx, args)


def lighten(params: Iterable[Any]) -> None:
    """Give each plain Typer parameter in ``params`` a converter without pydantic."""
    for param in params:
        if getattr(param, "_runtime_param", False) is not None:
            continue  # already converted, or a Typer without the cache
        converter = _converter_for(param)
        if converter is not None:
            param._runtime_param = converter


class _Converter:
    """What Typer's ``RuntimeParam`` offers: ``coerce(value, *, param, ctx)``."""

    __slots__ = ("_convert",)

    def __init__(self, convert: _Convert) -> None:
        self._convert = convert

    def coerce(self, value: Any, *, param: Any, ctx: Any) -> Any:
        if value is None:
            return None
        try:
            return self._convert(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), ctx=ctx, param=param) from None


def _converter_for(param: Any) -> _Converter | None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "nargs", 1) != 1 or getattr(param, "multiple", False):
        return None
    annotation = descriptor.annotation
    if annotation is str:
        return _Converter(_to_str)
    if annotation is Path:
        return _Converter(_to_path)
    if annotation is bool:
        return _Converter(_to_bool)
    if annotation in (int, float):
        low, high = getattr(param, "min", None), getattr(param, "max", None)
        return _Converter(_number(annotation, low, high))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _Converter(_choice(annotation, descriptor.parameter_info.case_sensitive))
    return None


def _to_str(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _to_path(value: Any) -> Path:
    return value if isinstance(value, Path) else Path(value)


_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a valid boolean")


def _number(kind: type, low: float | None, high: float | None) -> _Convert:
    noun = "an integer" if kind is int else "a number"

    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not {noun}")
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not {noun}") from None
        if kind is float and not math.isfinite(number):
            raise ValueError(f"{value!r} is not {noun}")
        if low is not None and number < low:
            raise ValueError(f"{number} is less than the minimum, {low}")
        if high is not None and number > high:
            raise ValueError(f"{number} is more than the maximum, {high}")
        return number

    return convert


def _choice(enum: type[Enum], case_sensitive: bool) -> _Convert:
    def key(text: str) -> str:
        return text if case_sensitive else text.casefold()

    members = {key(str(member.value)): member for member in enum}

    def convert(value: Any) -> Enum:
        if isinstance(value, enum):
            return value
        member = members.get(key(str(value)))
        if member is None:
            names = ", ".join(repr(str(m.value)) for m in enum)
            raise ValueError(f"{str(value)!r} is not one of {names}")
        return member

    return convert
