"""What every config section is built from: a strict pydantic model, and the two YAML habits it forgives.

A section refuses unknown keys, non-finite floats, strings where numbers belong and ``1`` where
``true`` belongs (pydantic's strict mode); ``Number`` reads YAML 1.1's ``1e-3`` (a string to PyYAML,
a number to every person who writes it) as the float. ``config_error`` turns pydantic's report into
the one-line ``ConfigError`` the CLI prints, naming the field (``section.key``) and the value.
Kept free of raycl's other modules: the sections in ``raycl.config`` and each method's section in
its own file (``raycl/methods/``) build on it.
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from raycl.errors import ConfigError

# Labels are class ids 0..C-1 (-1: unknown). More classes than this is an id column, not a label.
MAX_CLASSES = 1_000_000

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _yaml_number(value: Any) -> Any:
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


Number = Annotated[float, BeforeValidator(_yaml_number)]


_BOOL_AS_CHOICE = "a boolean is not one of the choices"


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(_BOOL_AS_CHOICE)
    return value


# On a field of a few integers: ``Annotated[Literal[0, 1, 2], NotBool]`` (Python's True == 1, so the
# Literal alone would take ``true`` as 1).
NotBool = BeforeValidator(_not_bool)


class Section(BaseModel):
    """One YAML section (``data:``, ``method:``...): strict types, no unknown keys, finite floats."""

    # frozen: a config is validated once, on the driver, and travels as it is to every worker; a
    # changed value is a new config (``Config.with_overrides``), validated as a whole again.
    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, use_attribute_docstrings=True, frozen=True
    )


def _expected(error: Any, model: type[BaseModel]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "literal_error":
        choices = re.split(r", | or ", ctx["expected"])
        return "expected one of " + ", ".join(choices)
    words = {
        "int_type": "expected an integer",
        "int_parsing": "expected an integer",
        "int_from_float": "expected an integer",
        "bool_type": "expected true or false",
        "bool_parsing": "expected true or false",
        "float_type": "expected a number",
        "float_parsing": "expected a number",
        "string_type": "expected a string",
        "finite_number": "expected a finite number",
        "list_type": "expected a list",
        "dict_type": "expected a mapping of keys",
        "model_type": "expected a mapping of keys",
        "model_attributes_type": "expected a mapping of keys",
    }
    if kind in words:
        return words[kind]
    if kind == "value_error" and _BOOL_AS_CHOICE in error["msg"]:
        allowed = typing.get_args(model.model_fields[str(error["loc"][-1])].annotation)
        return "expected one of " + ", ".join(map(repr, allowed))
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    bounds = {
        "greater_than_equal": ">= {ge}",
        "greater_than": "> {gt}",
        "less_than_equal": "<= {le}",
        "less_than": "< {lt}",
    }
    if kind in bounds:
        return "must be " + bounds[kind].format(**{k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()})
    return error["msg"]


def config_error(e: ValidationError, section: str, model: type[BaseModel], what: str | None = None) -> ConfigError:
    """The first problem pydantic found in ``section``, as one ConfigError naming ``section.key``."""
    error = e.errors(include_url=False)[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # a cross-field rule already said it in full
        return cause
    field = ".".join([section, *map(str, error["loc"])])
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(model.model_fields)
        where = f"'{section}'" + (f" ({what})" if what else "")
        return ConfigError(f"{field}: unknown key; allowed keys in {where}: {allowed}")
    return ConfigError(f"{field}: {_expected(error, model)}, got {error['input']!r}")


def build(model: type[Section], section: str, raw: Any, what: str | None = None) -> Section:
    """``raw`` (a YAML mapping or None) validated as ``model``; a problem is one ConfigError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{section}: expected a mapping of keys, got {raw!r}")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise config_error(e, section, model, what) from None
