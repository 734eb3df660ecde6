"""Model configs: a YAML file per model, overridden by an options string, checked against what the model accepts.

Option strings and value checking live in `evar.params`; this module knows the run settings and which model class
owns which keys (through the model registry).

EVAR's own model YAMLs load unchanged: `EVAR_KEYS` maps the keys EVAR's model classes read under other names onto
evar's (MSM-MAE's `mean`/`std` -> `norm_stats`, Dasheng's `model_name` -> weights and sizes, the transformers models'
`pretrained_model`/`wav2vec_model` -> `model_id`), `EVAR_IMPLIED` sets what an EVAR class name implies (its
`AR_Wav2Vec2Feature` -> `output: conv_features`), and keys evar does not need are accepted only with values that
cannot change the embeddings (each with its reason in the table). Run settings (`name`, `crop`, `cache_dtype`, ...)
may be set by an option whether or not the YAML has them, as EVAR's run scripts do (`--options name=...`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional, Union

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
    # EVAR's random crops, zero padding and running statistics (evar.embed.protocol): false, true or a list of parts.
    evar_protocol: Union[bool, list] = False
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
ANY = None  # in `EvarKeys.ignored`: every value is accepted


@dataclass(frozen=True)
class EvarKeys:
    """How the YAML keys of one model in EVAR map onto evar's keys of the registered model.

    Attributes:
        renamed: EVAR key -> evar key taking its value as is.
        combined: evar key -> EVAR keys whose values, all set, form its list value (`norm_stats` <- mean, std).
        by_value: EVAR key -> {EVAR value -> evar keys and values it stands for}; another value is an error.
        ignored: EVAR key -> (accepted values, or ANY for every value; why it cannot change the embeddings).
    """
    renamed: Mapping[str, str] = field(default_factory=dict)
    combined: Mapping[str, tuple] = field(default_factory=dict)
    by_value: Mapping[str, Mapping[Any, Mapping[str, Any]]] = field(default_factory=dict)
    ignored: Mapping[str, tuple] = field(default_factory=dict)

    def keys(self) -> set:
        """Every EVAR key this table accepts."""
        return set(self.renamed) | {k for ks in self.combined.values() for k in ks} | set(self.by_value) | set(
            self.ignored)


# Keys of EVAR's YAMLs that its model classes do not read, or read only for fine-tuning, when evar's model has no key
# of that name: accepted with these values only.
_WINDOW = (('hanning', 'hann'), "the Hann window these models compute with (EVAR's 'hanning')")
_COMMON_IGNORED = {
    'window': _WINDOW,
    'dur_frames': (ANY, "EVAR's fine-tuning crop (evar/data.py), not used for embeddings"),
    'encoder_only': (ANY, "EVAR's M2D runtime: whether the decoder is built too; embeddings come from the encoder"),
    'cls_token': ((False,), 'False: frames, not the [CLS] token, are pooled (True would change the embeddings)'),
    'flat_features': ((False,), 'False: the frames as the model gives them (True would change the embeddings)'),
}
_FBANK_FIXED = (ANY, "EVAR's AR_BEATs does not read it: BEATs' Kaldi fbank settings are fixed in its code")
_MSCLAP_UNREAD = (ANY, "EVAR's AR_MSCLAP does not read it: msclap's own configs fix the front end (and EVAR's "
                       "return_filename only makes it pass file names, which evar's waves stand for)")
_HF_ID = {'pretrained_model': 'model_id', 'wav2vec_model': 'model_id'}
_M2D_RUNTIME_STATS = {k: (ANY, "EVAR's RuntimeM2D overwrites it with the checkpoint's norm_stats") for k in ('mean', 'std')}
EVAR_KEYS = MappingProxyType({
    # nttcslab/m2d's RuntimeM2D sets cfg.mean/std from the checkpoint's norm_stats (-7.1/4.2 only when it has none),
    # and EVAR's AR_M2D then takes its cfg: EVAR's YAML values never reach the embeddings
    'm2d': EvarKeys(ignored=_M2D_RUNTIME_STATS),
    'm2d_clap': EvarKeys(ignored=_M2D_RUNTIME_STATS),
    'msm_mae': EvarKeys(combined={'norm_stats': ('mean', 'std')}),
    'beats': EvarKeys(ignored={k: _FBANK_FIXED for k in ('n_fft', 'window_size', 'hop_size', 'n_mels', 'f_min',
                                                          'f_max')}),
    'htsat': EvarKeys(ignored={'output_layers': (([-1],), "[-1]: the final output, HTS-AT's only one in evar")}),
    'dasheng': EvarKeys(by_value={'model_name': {
        'mispeech/dasheng-base': {'weight_file': 'external/dasheng_base.pt', 'embed_dim': 768, 'depth': 12,
                                  'num_heads': 12},
        'mispeech/dasheng-0.6B': {'weight_file': 'external/dasheng_06b.pt', 'embed_dim': 1280, 'depth': 32,
                                  'num_heads': 16},
        'mispeech/dasheng-1.2B': {'weight_file': 'external/dasheng_12b.pt', 'embed_dim': 1536, 'depth': 40,
                                  'num_heads': 24}}}),
    'hf': EvarKeys(renamed=_HF_ID),
    'msclap': EvarKeys(ignored={k: _MSCLAP_UNREAD for k in ('feature_d', 'n_fft', 'window_size', 'hop_size', 'n_mels',
                                                           'f_min', 'f_max', 'return_filename')}),
})
# What an EVAR class name implies beyond the registered model it maps to (evar.models.EVAR_ALIASES): EVAR's HuBERT
# and WavLM preprocess with wav2vec2-base-960h's processor; its wav2vec 2.0 classes differ in the output they take.
_W2V2_PROCESSOR = MappingProxyType({'feature_extractor_id': 'facebook/wav2vec2-base-960h'})
EVAR_IMPLIED = MappingProxyType({
    'ar_hubert.AR_Hubert': _W2V2_PROCESSOR,
    'ar_wavlm.AR_WavLM': _W2V2_PROCESSOR,
    'ar_wav2vec2.AR_Wav2Vec2Feature': MappingProxyType({'output': 'conv_features'}),
    'ar_wav2vec2.AR_Wav2Vec2Logit': MappingProxyType({'output': 'ctc_logits'}),
    'ar_vggish.AR_VGGish_4K': MappingProxyType({'output_layers': 0}),  # the first FC layer (4096-d), as vggish_4k.yaml
    'ar_dasheng.AR_Dasheng': MappingProxyType({'temporal_pooling_type': 'mean_sigmoid'}),  # the hub model's logits
})
_UNSET = object()  # a run setting that neither the YAML nor an option sets


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


def read_model_yaml(path: Path) -> tuple:
    """(the YAML's mapping, its model's registry name) of the model YAML at `path`.

    Raises:
        EvarError: an unreadable or malformed YAML, a missing or unknown `audio_repr`.
    """
    from .models import resolve_name

    raw = read_yaml_mapping(path, 'Config file')
    if 'audio_repr' not in raw:
        raise EvarError(f'Config file {path}: missing key audio_repr (the registered name of the model, e.g. byola).')
    return raw, resolve_name(str(raw['audio_repr']), source=str(path))


def load_config(path, options: str = '') -> ModelConfig:
    """Reads a model YAML, applies options, and checks every key against the run settings and the model's params."""
    from .models import model_params_class

    path = Path(path)
    raw, name = read_model_yaml(path)
    params_cls = model_params_class(name)
    model_keys = {f.name for f in dataclasses.fields(params_cls)}
    evar_keys = EVAR_KEYS.get(name, EvarKeys())
    evar_only = (evar_keys.keys() | set(_COMMON_IGNORED)) - model_keys - RUN_KEYS
    valid = model_keys | RUN_KEYS | evar_only | {'audio_repr'}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise EvarError(f'Config file {path}: unknown key(s) {unknown} for audio_repr {name}. '
                        f'Valid keys: {", ".join(sorted(valid))}.')
    # Run settings need no '+' in options (EVAR's scripts pass name=...); model keys do when the YAML lacks them.
    merged = apply_options({**dict.fromkeys(RUN_KEYS, _UNSET), **raw}, options, valid, source=str(path))
    merged = {k: v for k, v in merged.items() if v is not _UNSET}
    merged = _from_evar_keys(merged, evar_keys, EVAR_IMPLIED.get(str(raw['audio_repr']), {}), evar_only, str(path))
    run_values = {k: v for k, v in merged.items() if k in RUN_KEYS}
    model_values = {k: v for k, v in merged.items() if k in model_keys}
    run = typed_dataclass(RunSettings, run_values, source=str(path))
    params = typed_dataclass(params_cls, model_values, source=str(path))
    if run.crop not in CROP_POLICIES:
        raise EvarError(f'Config file {path}: crop must be one of {list(CROP_POLICIES)}, got {run.crop!r}.')
    if run.cache_dtype not in ('float32', 'float16'):
        raise EvarError(f'Config file {path}: cache_dtype must be float32 or float16, got {run.cache_dtype!r}.')
    from .embed.protocol import protocol_parts

    run = dataclasses.replace(run, evar_protocol=protocol_parts(run.evar_protocol, run.crop, str(path)))
    return ModelConfig(path=path, audio_repr=name, params=params, run=run)


def _from_evar_keys(values: dict, table: EvarKeys, implied: Mapping, evar_only: set, source: str) -> dict:
    """`values` with EVAR's keys (`evar_only`, those evar's model does not have) replaced by evar's as `table` says,
    and `implied` keys set where the YAML does not set them.

    Raises:
        EvarError: an ignored key with a value that would change the embeddings, an unknown `by_value` value, a
            combined key with some parts unset, or an EVAR key whose evar key is set to another value too.
    """
    out = {k: v for k, v in values.items() if k not in evar_only}
    mapped = {}
    for key in sorted(evar_only & set(values)):
        value = values[key]
        if key in table.renamed:
            mapped[table.renamed[key]] = (key, value)
        elif key in table.by_value:
            choices = table.by_value[key]
            if value not in choices:
                raise EvarError(f'{source}: {key}: {value!r} is not one evar can map; known: {", ".join(choices)}.')
            for k, v in choices[value].items():
                mapped[k] = (f'{key}: {value}', v)
        elif key not in (k for ks in table.combined.values() for k in ks):
            accepted, why = table.ignored.get(key) or _COMMON_IGNORED[key]
            if accepted is not ANY and value not in accepted:
                raise EvarError(f'{source}: {key}: {value!r} is not supported; evar accepts this EVAR key only as '
                                f'{" or ".join(map(repr, accepted))} ({why}).')
    for target, parts in table.combined.items():
        given = [values.get(k) for k in parts if k in values]
        if not given:
            continue
        if len(given) < len(parts) or any(v is None for v in given):
            raise EvarError(f'{source}: {"/".join(parts)} must all be set (they become evar\'s {target}); leaving '
                            f'them empty makes EVAR compute statistics from the task data, which this model does not '
                            f'do: set both, or remove them and set {target}.')
        mapped[target] = ('/'.join(parts), [values[k] for k in parts])
    for key, (origin, value) in mapped.items():
        if key in out and out[key] != value:
            raise EvarError(f'{source}: {key} is {out[key]!r} but {origin} says {value!r}; keep one of them.')
        out[key] = value
    for key, value in implied.items():
        out.setdefault(key, value)
    return out
