"""Recipes: every setting of ``skystack process`` in one TOML file.

A recipe has one table per stage, ``[calibration]``, ``[registration]``, ``[stack]`` and
``[enhance]``, whose keys are the fields of that stage's dataclass in :mod:`skystack.config`.
Keys left out keep their defaults, so a recipe may hold only what differs. A setting that is
not set (None: "choose for me") is written as a comment; inside an array it is ``"auto"``.
Unknown keys and wrong values are errors naming the file, the key and what was expected.

TOML is read with the standard library's :mod:`tomllib`; it is written with tomlkit, which
keeps a comment above each key (the field's description from the dataclass docstring).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import re
import tomllib
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from skystack.config import (
    CalibrationConfig,
    EnhanceConfig,
    PipelineConfig,
    RegistrationConfig,
    StackConfig,
)
from skystack.errors import ConfigError, FileAccessError, MissingFileError

__all__ = [
    "SECTIONS",
    "dump_recipe",
    "parse_recipe",
    "load_recipe",
    "apply_overrides",
    "section_settings",
    "settings_key",
]

SECTIONS: dict[str, type] = {
    "calibration": CalibrationConfig,
    "registration": RegistrationConfig,
    "stack": StackConfig,
    "enhance": EnhanceConfig,
}
"""Recipe table name -> the stage's config class."""

_NOT_IN_RECIPE = {
    # Found per group of lights by ``process``, or managed by it.
    "calibration": {"masters"},
    "registration": {"reference"},
    "stack": {"keep_cache", "maps"},
}
_NOT_IN_KEY = {"jobs", "memory_bytes", "scheduler"}
"""Settings that change how fast a step runs, not its result: left out of cache keys."""

_AUTO = "auto"


def _recipe_fields(section: str) -> list[dataclasses.Field[Any]]:
    skip = _NOT_IN_RECIPE.get(section, set())
    return [f for f in dataclasses.fields(SECTIONS[section]) if f.name not in skip]


def _plain(value: Any) -> Any:
    """A setting as TOML/JSON data: paths as text, tuples as lists, None inside arrays as auto."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_AUTO if v is None else _plain(v) for v in value]
    return value


def section_settings(config: PipelineConfig, section: str) -> dict[str, Any]:
    """The recipe keys of one stage and their values (None for "not set"), JSON-ready."""
    stage = getattr(config, section)
    return {f.name: _plain(getattr(stage, f.name)) for f in _recipe_fields(section)}


def settings_key(*parts: Any) -> str:
    """A short stable hash of JSON-ready ``parts`` (settings, content hashes, other keys).

    Settings that only change speed (jobs, memory, scheduler) are left out of dicts.
    """
    cleaned = [
        {k: v for k, v in part.items() if k not in _NOT_IN_KEY} if isinstance(part, dict) else part
        for part in parts
    ]
    text = json.dumps(cleaned, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _attribute_docs(cls: type) -> dict[str, str]:
    """First sentence of each attribute's description in a numpydoc ``Attributes`` section."""
    docs: dict[str, str] = {}
    names: list[str] = []
    in_attributes = False
    for line in (inspect.getdoc(cls) or "").splitlines():
        if line.strip() == "Attributes":
            in_attributes = True
            continue
        if not in_attributes or line.startswith("---"):
            continue
        header = re.match(r"^([a-z_]+(?:, [a-z_]+)*) :", line)
        if header:
            names = header.group(1).split(", ")
        elif line.startswith("    ") and names:
            for name in names:
                docs[name] = (docs.get(name, "") + " " + line.strip()).strip()
        elif line and not line.startswith(" "):
            break
    return {name: re.split(r"(?<=\.)\s", text)[0] for name, text in docs.items()}


def dump_recipe(config: PipelineConfig | None = None) -> str:
    """The recipe of ``config`` (default: what ``process`` does with no options) as TOML text."""
    import tomlkit

    config = config or PipelineConfig()
    document = tomlkit.document()
    document.add(tomlkit.comment("skystack recipe: every setting of `skystack process`."))
    document.add(tomlkit.comment("Keys left out keep their defaults; command-line flags win."))
    for section, cls in SECTIONS.items():
        descriptions = _attribute_docs(cls)
        table = tomlkit.table()
        for name, value in section_settings(config, section).items():
            if name in descriptions:
                table.add(tomlkit.comment(descriptions[name]))
            if value is None:
                table.add(tomlkit.comment(f"{name} = ...  (not set: chosen automatically)"))
            else:
                table.add(name, value)
        document.add(tomlkit.nl())
        document.add(section, table)
    return tomlkit.dumps(document)


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of ({_describe(args[0])})"
        return f"a list of {len(args)} values"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text",
            Path: "a file path"}.get(hint, str(hint))  # fmt: skip


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` read from TOML as the dataclass field type ``hint``, or ConfigError."""
    origin, args = get_origin(hint), get_args(hint)
    wrong = ConfigError(f"{where} = {value!r} is not valid: expected {_describe(hint)}")
    if hint is type(None):
        if value is None or value == _AUTO:
            return None
        raise wrong
    if origin in (Union, types.UnionType):
        for arm in sorted(args, key=lambda a: a is type(None)):
            try:
                return _coerce(value, arm, where)
            except ConfigError:
                continue
        raise wrong
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise wrong
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise wrong
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise wrong
        return tuple(
            _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (str, Path) and isinstance(value, str):
        return hint(value)
    raise wrong


def _with_settings(
    config: PipelineConfig, section: str, settings: Mapping[str, Any], source: str
) -> PipelineConfig:
    if section not in SECTIONS:
        raise ConfigError(
            f"{source}: unknown table [{section}]; a recipe has {', '.join(SECTIONS)}"
        )
    known = {f.name for f in _recipe_fields(section)}
    hints = get_type_hints(SECTIONS[section])
    changes = {}
    for name, value in settings.items():
        if name not in known:
            raise ConfigError(
                f"{source}: unknown setting [{section}] {name}; known: {', '.join(sorted(known))}"
            )
        changes[name] = _coerce(value, hints[name], f"{source}: [{section}] {name}")
    stage = dataclasses.replace(getattr(config, section), **changes)
    return dataclasses.replace(config, **{section: stage})


def parse_recipe(
    text: str, *, source: str = "recipe", base: PipelineConfig | None = None
) -> PipelineConfig:
    """The :class:`PipelineConfig` of a recipe's TOML ``text`` (keys left out keep ``base``'s)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from err
    config = base or PipelineConfig()
    for section, settings in data.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{source}: {section} must be a table ([{section}])")
        config = _with_settings(config, section, settings, source)
    return config


def load_recipe(
    path: str | os.PathLike[str], *, base: PipelineConfig | None = None
) -> PipelineConfig:
    """Read a recipe file; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise MissingFileError(f"{path}: recipe not found") from err
    except (PermissionError, IsADirectoryError) as err:
        raise FileAccessError(f"{path}: cannot read the recipe ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a TOML text file") from err
    return parse_recipe(text, source=str(path), base=base)


def apply_overrides(config: PipelineConfig, overrides: Iterable[str]) -> PipelineConfig:
    """Apply ``section.key=value`` settings (``--set``); the value is read as TOML, or as text.

    Examples: ``stack.reject=sigma``, ``enhance.saturation=1.5``, ``enhance.ghs=[2, 1, "auto",
    0, 1]``.
    """
    for override in overrides:
        name, sep, raw = override.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(
                f"--set {override}: expected SECTION.KEY=VALUE, e.g. stack.reject=sigma"
            )
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        config = _with_settings(config, section, {key.strip(): value}, "--set")
    return config
