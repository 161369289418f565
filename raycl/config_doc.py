"""The configuration reference as Markdown, written from the models themselves: ``raycl config schema
--markdown`` prints it, and the docs site's configuration reference and method pages are built from it
(docs/hooks.py), so the tables cannot fall behind the code."""

from __future__ import annotations

import types
import typing

from pydantic.fields import FieldInfo

from raycl.config import SECTIONS
from raycl.methods import REGISTRY, MethodConfig

BEGIN, END = "<!-- config-reference: raycl config schema --markdown -->", "<!-- /config-reference -->"


def _value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _kind(info: FieldInfo) -> str:
    """Choices or bounds of a field, e.g. ``sgd | lars`` or ``> 0, <= 1``."""
    tp = info.annotation
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(tp) if a is not type(None)] if union else [tp]
    for arg in args:
        if typing.get_origin(arg) is typing.Literal:
            return " \\| ".join(_value(a) for a in typing.get_args(arg))
    bounds = []
    for m in info.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(m, attr, None) is not None:
                bounds.append(f"{sign} {_value(getattr(m, attr))}")
    return ", ".join(bounds)


def _row(key: str, info: FieldInfo, owners: str = "") -> str:
    default = info.get_default(call_default_factory=True)
    what = (info.description or "").replace("|", "\\|")
    return f"| `{key}`{owners} | {_value(default)} | {_kind(info)} | {what} |"


def _method_keys() -> dict[tuple[str, type[MethodConfig]], list[str]]:
    """(key, the model that declares it) -> the methods that have it, for keys beyond MethodConfig's."""
    owners: dict[tuple[str, type[MethodConfig]], list[str]] = {}
    for name, cls in sorted(REGISTRY.items()):
        if not cls.__module__.startswith("raycl."):  # a method from another package documents itself
            continue
        for key in [k for k in cls.Config.model_fields if k not in MethodConfig.model_fields]:
            declared = next(m for m in cls.Config.__mro__ if key in getattr(m, "__annotations__", {}))
            owners.setdefault((key, declared), []).append(name)
    return owners


def markdown() -> str:
    """One table: every section's keys; the ``method`` keys each of raycl's methods adds follow the
    shared ones, with the methods that have them."""
    lines = [BEGIN, "| key | default | values | what |", "| --- | --- | --- | --- |"]
    for section, model in SECTIONS.items():
        lines += [_row(f"{section}.{key}", info) for key, info in model.model_fields.items()]
        if section == "method":
            for (key, declared), names in _method_keys().items():
                lines.append(_row(f"method.{key}", declared.model_fields[key], f" ({', '.join(names)})"))
    lines.append(END)
    return "\n".join(lines) + "\n"


def method_markdown(name: str) -> str:
    """The table of the keys one method takes: the shared ``method`` keys, then its own."""
    cls = REGISTRY[name]
    lines = ["| key | default | values | what |", "| --- | --- | --- | --- |"]
    lines += [_row(f"method.{key}", info) for key, info in cls.Config.model_fields.items()]
    return "\n".join(lines) + "\n"
