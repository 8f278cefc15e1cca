"""One config per trainer: a dataclass whose fields carry their own help, bounds and role.

A trainer's settings live in exactly one place, its config dataclass (see ``docs/design.md``,
"The engine contract"). Each field is declared with :func:`param`, which records:

- ``help``: the text of the generated command-line flag;
- bounds (``low``/``high``, inclusive unless ``*_open``), ``choices``, and finiteness, checked by
  :func:`validate_config` before any work starts;
- ``role``: ``"model"`` (changes what is learned: part of the resume check), ``"path"`` (an
  input file or folder: part of the resume check, compared resolved) or ``"run"`` (operational:
  threads, intervals, time budget -- never part of the resume check).

Presets are tables of overrides (edm2's style): ``PRESETS = {"cpu": {}, "paper": {...}}`` on
the config class. :func:`add_config_arguments` turns the fields into argparse flags (one per
field, ``snake_case`` -> ``--kebab-case``, default ``None`` so a preset fills what is not
given) and :func:`config_from_args` builds and validates the config from the parsed flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from maskgen.errors import MaskgenError

ROLES = ("model", "path", "run")
C = TypeVar("C")


def param(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    role: str = "model",
    flag: bool = True,
) -> Any:
    """A dataclass field with its help text, bounds and role (see the module docstring).

    ``default`` may be a list/tuple/dict (copied per instance). ``flag=False`` keeps a field out
    of the command line (set by code, e.g. a nested network spec that only presets change).
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    meta = dict(
        help=help,
        low=low,
        high=high,
        low_open=low_open,
        high_open=high_open,
        choices=choices,
        role=role,
        flag=flag,
    )
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_name(name: str) -> str:
    """``area_target`` -> ``--area-target``."""
    return "--" + name.replace("_", "-")


def _base_type(tp: Any) -> Any:
    """``int | None`` -> ``int``; other hints are returned as they are."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type hint of each field of a config dataclass, ``Optional`` unwrapped."""
    hints = typing.get_type_hints(cls)
    return {f.name: _base_type(hints[f.name]) for f in dataclasses.fields(cls)}


# ----------------------------------------------------------------------------- validation
def _check_number(name: str, value: Any, meta: dict[str, Any]) -> None:
    flag = flag_name(name)
    if isinstance(value, float) and not math.isfinite(value):
        raise MaskgenError(f"{flag} {value}: must be a finite number")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value <= low if meta.get("low_open") else value < low):
        rel = ">" if meta.get("low_open") else ">="
        raise MaskgenError(f"{flag} {value}: must be {rel} {low:g}")
    if high is not None and (value >= high if meta.get("high_open") else value > high):
        rel = "<" if meta.get("high_open") else "<="
        raise MaskgenError(f"{flag} {value}: must be {rel} {high:g}")


def _check_value(name: str, value: Any, meta: dict[str, Any]) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(str(c) for c in choices)
        raise MaskgenError(f"{flag_name(name)} {value}: unknown (choose from {allowed})")
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        _check_number(name, value, meta)
    elif isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                _check_number(name, v, meta)


def validate_config(cfg: Any) -> None:
    """Check every field of a config dataclass against its bounds and choices.

    Raises:
        MaskgenError: ``--flag VALUE: problem`` for the first bad field.
    """
    for f in dataclasses.fields(cfg):
        _check_value(f.name, getattr(cfg, f.name), dict(f.metadata))
    extra = getattr(cfg, "check", None)
    if callable(extra):
        extra()  # cross-field rules, e.g. "pad < patch_size"


# ------------------------------------------------------------------------ construction
def _coerce(value: Any, tp: Any) -> Any:
    """JSON values back to the field's type (lists -> tuples for tuple fields)."""
    if value is None:
        return None
    origin = typing.get_origin(tp) or tp
    if origin is tuple and isinstance(value, list):
        inner = typing.get_args(tp)
        nested = inner and (typing.get_origin(inner[0]) or inner[0]) is tuple
        return tuple(tuple(v) if nested else v for v in value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def make_config(cls: type[C], preset: str | None = None, **overrides: Any) -> C:
    """A validated config: the class defaults, then ``cls.PRESETS[preset]``, then ``overrides``.

    ``None`` overrides are ignored (an unset flag). A ``preset`` field, when the class has one,
    records the preset's name.

    Raises:
        MaskgenError: unknown preset or field, or a value out of its bounds.
    """
    presets: dict[str, dict[str, Any]] = getattr(cls, "PRESETS", {})
    kw: dict[str, Any] = {}
    if preset is not None:
        if preset not in presets:
            raise MaskgenError(f"--preset {preset}: unknown (choose from {', '.join(presets)})")
        kw.update(presets[preset])
    types_ = field_types(cls)
    for k, v in overrides.items():
        if k not in types_:
            raise MaskgenError(f"{flag_name(k)}: not a setting of this trainer")
        if v is not None:
            kw[k] = v
    if preset is not None and "preset" in types_:
        kw["preset"] = preset
    cfg = cls(**{k: _coerce(v, types_[k]) for k, v in kw.items()})
    validate_config(cfg)
    return cfg


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a config (tuples become lists)."""
    import json

    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a config from :func:`config_to_dict` output; unknown keys are ignored (an older
    or newer maskgen wrote them) and missing keys take the class defaults."""
    types_ = field_types(cls)
    return cls(**{k: _coerce(v, types_[k]) for k, v in data.items() if k in types_})


def resume_key(cfg: Any) -> dict[str, Any]:
    """What must match for a run to resume: model and path fields, paths resolved.

    Operational (``role="run"``) fields are left out, so changing threads, intervals or the time
    budget between invocations is allowed.
    """
    data = config_to_dict(cfg)
    key: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        role = f.metadata.get("role", "model")
        if role == "run":
            continue
        value = data[f.name]
        if role == "path" and value:
            value = str(Path(os.path.expanduser(str(value))).resolve())
        key[f.name] = value
    return key


# ------------------------------------------------------------------------------- CLI
def _tuple_parser(tp: Any, flag: str):
    inner = typing.get_args(tp)
    elem = inner[0] if inner else str
    conv = float if elem is float else int if elem is int else str

    def parse(text: str) -> tuple[Any, ...]:
        try:
            return tuple(conv(p) for p in text.replace(" ", "").split(",") if p != "")
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {conv.__name__} values, got {text!r}"
            ) from None

    return parse


def _number_parser(conv: type, flag: str):
    def parse(text: str) -> Any:
        try:
            value = conv(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {conv.__name__}, got {text!r}") from None
        return value

    parse.__name__ = conv.__name__
    return parse


def add_config_arguments(
    parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()
) -> None:
    """Add ``--preset`` (when the class has presets) and one flag per field of ``cls``.

    Every flag defaults to ``None`` (the preset or class default applies). Booleans become
    ``--name/--no-name``; tuples take comma-separated values. Fields declared with
    ``flag=False`` and names in ``skip`` get no flag.
    """
    presets = getattr(cls, "PRESETS", {})
    if presets:
        parser.add_argument(
            "--preset",
            choices=list(presets),
            default=None,
            help=f"named settings (default: {next(iter(presets))})",
        )
    types_ = field_types(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("flag", True) or f.name in skip or f.name == "preset":
            continue
        tp, flag = types_[f.name], flag_name(f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f"{f.metadata.get('help', '')} (default: {default})"
        kw: dict[str, Any] = dict(dest=f.name, default=None, help=help_)
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif (typing.get_origin(tp) or tp) is tuple:
            parser.add_argument(flag, type=_tuple_parser(tp, flag), metavar="A,B,..", **kw)
        elif tp in (int, float):
            parser.add_argument(
                flag, type=_number_parser(tp, flag), metavar=tp.__name__.upper(), **kw
            )
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(flag, type=str, choices=choices, **kw)


def config_from_args(cls: type[C], args: argparse.Namespace, **fixed: Any) -> C:
    """Build the validated config of ``cls`` from parsed flags (plus ``fixed`` values)."""
    names = {f.name for f in dataclasses.fields(cls)}
    overrides = {k: getattr(args, k) for k in names if hasattr(args, k) and k != "preset"}
    overrides.update(fixed)
    presets = getattr(cls, "PRESETS", {})
    preset = (getattr(args, "preset", None) or next(iter(presets))) if presets else None
    return make_config(cls, preset, **overrides)
