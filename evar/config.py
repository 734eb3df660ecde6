"""Model configs: a YAML file per model, overridden by an options string, checked against what the model accepts.

Options follow EVAR: `'batch_size=16,weight_file=/x.pth'` overrides keys present in the YAML; `+key=value` adds a
key the YAML lacks. Values are parsed as YAML scalars or flow lists (`[1, 2]`), never evaluated as code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import EvarError


@dataclass(frozen=True)
class RunSettings:
    """Keys every config may carry besides the model's own: training and runtime settings (EVAR names)."""
    batch_size: int = 256
    lr_lineareval: float = 0.0003
    report_per_epochs: int = 20
    early_stop_epochs: int = 20
    crop: str = 'head'  # clips longer than unit_sec: 'head' (EVAR's test crop), 'center', or 'full' (no crop)
    num_workers: Optional[int] = None  # audio decoding workers; None: chosen from the CPU count
    # Clips per forward pass when embedding; None: batch_size on GPU, 16 on CPU (small batches stay in cache and
    # ran 2-3x faster than 256 for BYOL-A on 2 cores). Embeddings do not depend on it: padding is masked.
    extract_batch_size: Optional[int] = None
    cache_dtype: str = 'float32'  # 'float16' halves the embedding cache
    name: Optional[str] = None  # representation name in results; the config file's stem when None
    # Fine-tuning keys of EVAR's configs, accepted so those files load unchanged.
    warmup_epochs: int = 5
    mixup: float = 0.5
    ft_bs: int = 256
    ft_lr: float = 0.001
    ft_early_stop_epochs: int = -1
    ft_epochs: int = 200
    ft_freq_mask: int = 30
    ft_time_mask: int = 100
    ft_rrc: bool = True
    ft_noise: float = 0.0
    training_mask: float = 0.0  # masking ratio while fine-tuning (M2D family)
    freeze_embed: Optional[bool] = None  # freeze the patch embedding while fine-tuning (M2D family)


RUN_KEYS = frozenset(f.name for f in dataclasses.fields(RunSettings))
CROP_POLICIES = ('head', 'center', 'full')


@dataclass(frozen=True)
class ModelConfig:
    """A loaded config: which AR to build, its parameters, and the run settings."""
    path: Path
    audio_repr: str
    model_params: dict = field(default_factory=dict)
    run: RunSettings = field(default_factory=RunSettings)

    @property
    def name(self) -> str:
        return self.run.name or self.path.stem

    def model_hash(self) -> str:
        """Hash of what determines the model's outputs (not the head's training settings)."""
        text = json.dumps({'audio_repr': self.audio_repr, 'params': self.model_params}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def full_hash(self) -> str:
        text = json.dumps({'model': self.model_hash(), 'run': dataclasses.asdict(self.run)}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


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


def load_config(path, options: str = '') -> ModelConfig:
    """Reads a model YAML, applies options, and checks every key against the run settings and the model's params."""
    from .models import model_params_class, resolve_name

    path = Path(path)
    raw = read_yaml_mapping(path, 'Config file')
    if 'audio_repr' not in raw:
        raise EvarError(f'Config file {path}: missing key audio_repr (the registered name of the model, e.g. byola).')
    name = resolve_name(str(raw['audio_repr']), source=str(path))
    params_cls = model_params_class(name)
    model_keys = {f.name for f in dataclasses.fields(params_cls)}
    valid = model_keys | RUN_KEYS | {'audio_repr'}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise EvarError(f'Config file {path}: unknown key(s) {unknown} for audio_repr {name}. '
                        f'Valid keys: {", ".join(sorted(valid))}.')
    merged = apply_options(raw, options, valid, source=str(path))
    run_values = {k: v for k, v in merged.items() if k in RUN_KEYS}
    model_values = {k: v for k, v in merged.items() if k in model_keys}
    run = typed_dataclass(RunSettings, run_values, source=str(path))
    model_values = dataclasses.asdict(typed_dataclass(params_cls, model_values, source=str(path)))
    if run.crop not in CROP_POLICIES:
        raise EvarError(f'Config file {path}: crop must be one of {list(CROP_POLICIES)}, got {run.crop!r}.')
    if run.cache_dtype not in ('float32', 'float16'):
        raise EvarError(f'Config file {path}: cache_dtype must be float32 or float16, got {run.cache_dtype!r}.')
    return ModelConfig(path=path, audio_repr=name, model_params=model_values, run=run)
