"""Typed parameters and option strings: the one place where user-given keys and values are parsed and checked.

Option strings follow EVAR: `'batch_size=16,weight_file=/x.pth'` overrides keys present in a YAML; `+key=value` adds a
key the YAML lacks. Values are parsed as YAML scalars or flow lists (`[1, 2]`), never evaluated as code. Typed
dataclasses (a model's `Params`, the run settings) check each value against the field's annotation.

Neither `evar.config` nor `evar.models` is imported here, so both can use it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import EvarError


def parse_value(text: str, key: str) -> Any:
    """A YAML scalar or flow list, e.g. '16' -> 16, '1e-3' -> 0.001, 'true' -> True, '[1,2]' -> [1, 2]."""
    import yaml

    # YAML 1.1 reads '1e-3' as a string; numbers written that way are meant as floats.
    try:
        return float(text) if ('e' in text.lower() and not text.lower().startswith(('true', 'false'))
                               and _looks_like_float(text)) else yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise EvarError(f'Option {key}={text!r}: value is not a YAML scalar or list ({e}).') from e


def _looks_like_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def split_options(options: str) -> list[tuple[str, str, bool]]:
    """'a=1,+b=[1,2],c=x' -> [('a', '1', False), ('b', '[1,2]', True), ('c', 'x', False)]. Commas inside [] stay."""
    items, depth, current = [], 0, ''
    for ch in options:
        if ch == ',' and depth == 0:
            items.append(current)
            current = ''
            continue
        depth += {'[': 1, ']': -1, '{': 1, '}': -1}.get(ch, 0)
        current += ch
    items.append(current)
    parsed = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if '=' not in item:
            raise EvarError(f'Option {item!r} is not of the form key=value (or +key=value to add a key).')
        key, value = item.split('=', 1)
        add = key.startswith('+')
        parsed.append((key.lstrip('+').strip(), value.strip(), add))
    return parsed


def apply_options(raw: dict, options: str, valid_keys: set, source: str) -> dict:
    """A copy of `raw` with the options applied; unknown keys are an error that lists the valid ones."""
    result = dict(raw)
    for key, value, add in split_options(options or ''):
        if key not in valid_keys:
            raise EvarError(f'Unknown config key {key!r} in options for {source}. Valid keys: {", ".join(sorted(valid_keys))}.')
        if not add and key not in raw:
            raise EvarError(f'Option {key}={value}: {key!r} is not in {source}; write +{key}={value} to add it.')
        result[key] = parse_value(value, key)
    return result


def typed_dataclass(cls, values: dict, source: str):
    """`cls(**values)` with each value checked (and int->float widened) against the field's annotation."""
    import typing

    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        expected = hints[key]
        options = typing.get_args(expected) if typing.get_origin(expected) is typing.Union else (expected,)
        if value is None and type(None) in options:
            checked[key] = None
            continue
        for option in options:
            base = typing.get_origin(option) or option
            if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                checked[key] = float(value)
                break
            if base in (list, tuple) and isinstance(value, (list, tuple)):
                checked[key] = list(value)
                break
            if base is typing.Any or (isinstance(base, type) and isinstance(value, base)
                                      and not (base is int and isinstance(value, bool))):
                checked[key] = value
                break
        else:
            raise EvarError(f'{source}: key {key!r} expects {expected}, got {value!r}.')
    try:
        return cls(**checked)
    except (TypeError, ValueError) as e:
        raise EvarError(f'{source}: {e}') from e


def read_yaml_mapping(path: Path, what: str) -> dict:
    """The top-level mapping of a YAML file.

    Raises:
        EvarError: the file is missing, not valid YAML, or not a mapping; `what` names it ('Config file', ...).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise EvarError(f'{what} {path} does not exist.')
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise EvarError(f'{what} {path} is not valid YAML: {e}') from e
    if not isinstance(data, dict):
        raise EvarError(f'{what} {path} must be a YAML mapping of key: value.')
    return data
