"""Model configs: a YAML file per model, overridden by an options string, checked against what the model accepts.

Option strings and value checking live in `evar.params`; this module knows the run settings and which model class
owns which keys (through the model registry).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import EvarError
from .params import apply_options, read_yaml_mapping, typed_dataclass


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
    """A loaded config: which AR to build, its typed parameters (checked once, when the YAML is read), and the run
    settings.

    Attributes:
        path: the YAML file.
        audio_repr: the registry name (or `package.module:Class`) of the model.
        params: an instance of the model class's `Params` dataclass.
        run: the training and runtime settings every config may carry.
    """
    path: Path
    audio_repr: str
    params: Any
    run: RunSettings = field(default_factory=RunSettings)

    @property
    def name(self) -> str:
        """The representation's name in results: the YAML's `name` key, else the file's stem."""
        return self.run.name or self.path.stem

    @property
    def model_params(self) -> dict:
        """The model parameters as a plain dict (key -> value), as written to caches and logs."""
        return dataclasses.asdict(self.params)

    def model_hash(self) -> str:
        """Hash of what determines the model's outputs (not the head's training settings)."""
        text = json.dumps({'audio_repr': self.audio_repr, 'params': self.model_params}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def full_hash(self) -> str:
        """Eight hex digits over the model and run settings (EVAR's `run_id` style)."""
        text = json.dumps({'model': self.model_hash(), 'run': dataclasses.asdict(self.run)}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


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
    params = typed_dataclass(params_cls, model_values, source=str(path))
    if run.crop not in CROP_POLICIES:
        raise EvarError(f'Config file {path}: crop must be one of {list(CROP_POLICIES)}, got {run.crop!r}.')
    if run.cache_dtype not in ('float32', 'float16'):
        raise EvarError(f'Config file {path}: cache_dtype must be float32 or float16, got {run.cache_dtype!r}.')
    return ModelConfig(path=path, audio_repr=name, params=params, run=run)
