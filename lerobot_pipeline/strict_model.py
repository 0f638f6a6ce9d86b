"""The base of every configuration model: pydantic, frozen, no unknown keys, errors that name the key.

:func:`validate` turns pydantic's ``ValidationError`` into a :class:`ConfigError` whose key is the
dotted path of the first offending value (``alignment.windw_ms``, ``cameras[1].role``,
``sources.robot_1.raw_root``) and whose message says what was expected.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Strict
from pydantic_core import ErrorDetails

from lerobot_pipeline.errors import ConfigError

# YAML numbers: an int is accepted where a float is expected, a bool or a string is not.
Number = Annotated[float, Strict()]
SECRET_KEYS = frozenset({"password"})  # values never echoed in error messages
_NO_CROSS_CHECKS = "skip_cross_checks"
_SCALAR_TYPES = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string",
}
_CONTAINER_TYPES = {
    "model_type": "a mapping", "model_attributes_type": "a mapping", "dict_type": "a mapping",
    "tuple_type": "a list", "list_type": "a list",
}


class StrictModel(BaseModel):
    """Frozen, ``extra="forbid"``: unknown keys are errors, values cannot be reassigned."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PositionalModel(StrictModel):
    """A small model whose fields may also be given positionally, in declaration order.

    (A custom ``__init__`` makes pydantic validate through it, without the validation context, so
    only models that need no context use this.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            names = list(type(self).model_fields)
            if len(args) > len(names):
                raise TypeError(f"{type(self).__name__} takes at most {len(names)} positional arguments")
            kwargs.update(zip(names, args))
        super().__init__(**kwargs)


def cross_checks_enabled(info: pydantic.ValidationInfo) -> bool:
    return not (isinstance(info.context, Mapping) and info.context.get(_NO_CROSS_CHECKS))


def validate(cls: type[BaseModel], data: Any, prefix: str = "", *, context: Mapping[str, Any] | None = None,
             cross_checks: bool = True) -> Any:
    """``cls.model_validate(data)`` with errors as :class:`ConfigError` naming the dotted key."""
    ctx = dict(context or {})
    if not cross_checks:
        ctx[_NO_CROSS_CHECKS] = True
    if data is None:
        data = {}
    try:
        return cls.model_validate(data, context=ctx)
    except pydantic.ValidationError as e:
        errors = sorted(e.errors(), key=lambda err: err["type"] != "extra_forbidden")  # unknown keys first
        raise _config_error(cls, errors[0], prefix) from None


def dotted(prefix: str, loc: tuple[str | int, ...]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out or "<root>"


def _config_error(root: type[BaseModel], err: ErrorDetails, prefix: str) -> ConfigError:
    loc, kind, value, ctx = tuple(err["loc"]), err["type"], err.get("input"), err.get("ctx") or {}
    key = dotted(prefix, loc)
    secret = bool(loc) and loc[-1] in SECRET_KEYS
    got = "" if secret else f", got {value!r}"
    if kind == "extra_forbidden":
        known = _known_keys(root, loc[:-1])
        return ConfigError(key, f"unknown key (known keys here: {', '.join(known)})")
    if kind == "missing":
        return ConfigError(key, "required key is missing")
    if kind == "literal_error":
        return ConfigError(key, f"{value!r} is not one of {ctx.get('expected')}")
    if kind == "value_error":
        return ConfigError(key, str(ctx.get("error")))
    if kind in _SCALAR_TYPES:
        hint = " (quote it in YAML)" if secret and kind == "string_type" else ""
        return ConfigError(key, f"expected {_SCALAR_TYPES[kind]}{hint}{got}")
    if kind in _CONTAINER_TYPES:
        return ConfigError(key, f"expected {_CONTAINER_TYPES[kind]}, got {type(value).__name__}")
    bounds = {"greater_than": ("> ", "gt"), "greater_than_equal": (">= ", "ge"), "less_than": ("< ", "lt"),
              "less_than_equal": ("<= ", "le")}
    if kind in bounds:
        op, name = bounds[kind]
        return ConfigError(key, f"must be {op}{ctx.get(name)}{got}")
    if kind == "string_pattern_mismatch":
        return ConfigError(key, f"{'value' if secret else repr(value)} must match {ctx.get('pattern')}")
    return ConfigError(key, err["msg"] + got)


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = rest[0] if len(rest) == 1 else tp
            if len(rest) != 1:
                return tp
        else:
            return tp


def annotation_at(root: type[BaseModel], loc: tuple[str | int, ...] | list[str]) -> Any:
    """The type annotation of the value at ``loc`` under ``root`` (None when there is no such key)."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin is tuple or origin is list:
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return tp


def _known_keys(root: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    tp = _unwrap(annotation_at(root, loc))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return sorted(tp.model_fields)
    return []


def takes_plain_string(tp: Any) -> bool:
    """True when a value of type ``tp`` may be any string (so a CLI string must not be YAML-parsed)."""
    tp = _unwrap(tp)
    if tp is str:
        return True
    if typing.get_origin(tp) is Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    return False


def allows_none(tp: Any) -> bool:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp is type(None) or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                                and type(None) in typing.get_args(tp))
