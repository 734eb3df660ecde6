"""Bring-your-own-model adapters: any module implementing the HEAR API (`hear`) or an X-ARES encoder (`xares`).

HEAR (https://hearbenchmark.com/hear-api.html): the module has `load_model(model_file_path='')` returning a model
with `sample_rate`, `scene_embedding_size`, `timestamp_embedding_size`; `get_timestamp_embeddings(audio [n, N],
model) -> (embeddings [n, T, D], timestamps [n, T] in ms)` and `get_scene_embeddings(audio, model) -> [n, D]`.
  use: timestamp  frames are the timestamp embeddings; a frame is valid where its timestamp lies within the clip
  use: scene      one frame per clip: the scene embedding of the clip's unpadded audio

X-ARES (https://github.com/jimbozhang/xares): a class with `sampling_rate`, `output_dim`, `hop_size_in_ms` and
`forward(audio [B, N]) -> [B, T, D]` (or `forward(audio, audio_attention_mask)`); valid frames of a clip of n
samples: ceil(n / hop_samples), clipped to [1, T].

Neither API guarantees that padding is ignored, so clips are never padded for the user's model: clips of equal
length run together, each group on its unpadded audio, and the outputs are padded (and masked) afterwards.
The embedding cache hashes the module's source file (and HEAR's model_file), so editing it invalidates cached
embeddings; edits to other files it imports do not: give the config another `name` or clear the cache then.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..errors import EvarError
from .base import AudioRepr, Frames, lengths_to_mask


def _import(module_name: str, what: str):
    if not module_name:
        raise EvarError(f'{what}: set `module` to the importable name of your module (on PYTHONPATH).')
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        raise EvarError(f'{what}: cannot import module {module_name!r} ({e}). Put it on PYTHONPATH or install it.') \
            from e


def _source_file(module_name: Optional[str]) -> list:
    """The module's source file (hashed by the embedding cache), without importing the module itself."""
    if not module_name:
        return []
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return []
    origin = getattr(spec, 'origin', None) if spec else None
    return [Path(origin)] if origin and Path(origin).is_file() else []


def _tensor(x, device) -> torch.Tensor:
    return torch.as_tensor(x).to(device).float()


def _by_length(wav: torch.Tensor, lengths: torch.Tensor, run) -> Frames:
    """Calls run(audio [n, L]) -> (embeddings [n, T, D], valid [n, T] bool) once per distinct clip length, on the
    unpadded audio, and pads the outputs into one Frames."""
    outs = [None] * wav.shape[0]
    for n in sorted(set(lengths.tolist())):
        idx = (lengths == n).nonzero().flatten()
        emb, valid = run(wav[idx, :int(n)])
        if emb.dim() != 3 or emb.shape[0] != len(idx):
            raise EvarError(f'the model returned embeddings of shape {tuple(emb.shape)} for {len(idx)} clips; '
                            f'expected [{len(idx)}, T, D].')
        valid = valid.clone()
        valid[:, 0] |= ~valid.any(1)  # at least one frame per clip
        for j, i in enumerate(idx.tolist()):
            outs[i] = (emb[j], valid[j])
    t = max(e.shape[0] for e, _ in outs)
    emb = wav.new_zeros(len(outs), t, outs[0][0].shape[-1], dtype=outs[0][0].dtype)
    mask = torch.zeros(len(outs), t, dtype=torch.bool, device=wav.device)
    for i, (e, v) in enumerate(outs):
        emb[i, :e.shape[0]] = e
        mask[i, :v.shape[0]] = v
    return Frames(emb, mask)


@dataclass(frozen=True)
class HEARParams:
    """YAML keys of `hear`.

    Keys:
        module: importable name of a module implementing the HEAR API (on PYTHONPATH).
        model_file: passed to load_model(model_file_path) when set (and hashed by the embedding cache).
        sample_rate: Hz; must equal the model's sample_rate.
        use: 'timestamp' (frames = timestamp embeddings) or 'scene' (one frame per clip).
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
        feature_d: not used.
    """
    module: str = ''  # importable module implementing the HEAR API
    model_file: Optional[str] = None  # passed to load_model(model_file_path) when set
    sample_rate: int = 16000  # must equal the model's sample_rate
    use: str = 'timestamp'  # timestamp | scene
    temporal_pooling_type: str = 'mean'
    feature_d: Optional[int] = None  # informational


class HEARAdapter(AudioRepr):
    """Any HEAR API module (Turian et al., HEAR 2021; hearbenchmark.com): waves [B, N] float32 at sample_rate Hz ->
    Frames [B, T, D] of timestamp embeddings (valid where the timestamp lies within the clip) or [B, 1, D] scene
    embeddings; each distinct clip length runs on its unpadded audio. The model is kept in eval mode.

    Raises:
        EvarError: use not timestamp / scene, the module not importable or lacking the API's functions, or a
            model whose sample_rate differs from the config's or lacks the integer embedding size (at construction).
    """
    Params = HEARParams

    def __init__(self, params: HEARParams):
        super().__init__(params)
        if params.use not in ('timestamp', 'scene'):
            raise EvarError(f'hear: use must be timestamp or scene, got {params.use!r}.')
        self.api = _import(params.module, 'hear')
        missing = [f for f in ('load_model', 'get_timestamp_embeddings', 'get_scene_embeddings')
                   if not callable(getattr(self.api, f, None))]
        if missing:
            raise EvarError(f'hear: module {params.module!r} lacks {missing} of the HEAR API.')
        model = self.api.load_model(params.model_file) if params.model_file else self.api.load_model()
        rate = getattr(model, 'sample_rate', None)
        if rate is None or int(rate) != params.sample_rate:
            raise EvarError(f'hear: the model\'s sample_rate is {rate}, the config says {params.sample_rate}; set '
                            f'sample_rate: {rate} in the config.')
        self.model = model  # an nn.Module registers as a submodule and follows .to(device)
        size = 'timestamp_embedding_size' if params.use == 'timestamp' else 'scene_embedding_size'
        if not isinstance(getattr(model, size, None), int):
            raise EvarError(f'hear: the model of {params.module!r} has no integer {size} (HEAR API).')
        if isinstance(model, nn.Module):
            model.eval()

    @property
    def frame_hop_sec(self) -> None:
        """None: the HEAR API gives each frame's timestamp, not a hop (and `scene` gives one frame per clip)."""
        return None

    @property
    def embedding_dim(self) -> int:
        """The model's timestamp_embedding_size or scene_embedding_size (HEAR API)."""
        size = 'timestamp_embedding_size' if self.params.use == 'timestamp' else 'scene_embedding_size'
        return int(getattr(self.model, size))

    @classmethod
    def weight_paths(cls, params) -> list:
        """model_file (when set) and the module's source file, found without importing it."""
        files = [Path(params.model_file).expanduser()] if params.model_file else []
        return files + _source_file(params.module)

    def train(self, mode: bool = True):
        """nn.Module.train, except that the wrapped model stays in eval mode (no dropout or BatchNorm updates)."""
        super().train(mode)
        if isinstance(self.model, nn.Module):
            self.model.eval()  # a frozen representation: never dropout or batch-statistics updates
        return self

    def _timestamp(self, audio):
        emb, ts = self.api.get_timestamp_embeddings(audio, self.model)
        emb, ts = _tensor(emb, audio.device), _tensor(ts, audio.device)
        return emb, ts <= audio.shape[1] * 1000.0 / self.sample_rate + 1e-3

    def _scene(self, audio):
        emb = _tensor(self.api.get_scene_embeddings(audio, self.model), audio.device)
        return emb[:, None, :], torch.ones(emb.shape[0], 1, dtype=torch.bool, device=audio.device)

    def encode(self, wav, lengths) -> Frames:
        """Frames of waves [B, N] with `lengths` [B] samples (the waves themselves are the features): [B, T, D]
        timestamp embeddings or [B, 1, D] scene embeddings, float32, padded and masked per clip.

        Raises:
            EvarError: the model returns embeddings that are not [n, T, D] for n clips.
        """
        return _by_length(wav, lengths, self._timestamp if self.params.use == 'timestamp' else self._scene)


@dataclass(frozen=True)
class XARESParams:
    """YAML keys of `xares`.

    Keys:
        target: 'package.module:Class' of an X-ARES encoder; or give module and class_name.
        module, class_name: the same as two keys (used when target is not set).
        init_args: keyword arguments of the class.
        sample_rate: Hz; must equal the encoder's sampling_rate.
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
        feature_d: not used.
    """
    target: Optional[str] = None  # 'package.module:Class', or module + class_name
    module: Optional[str] = None
    class_name: Optional[str] = None
    init_args: dict = field(default_factory=dict)  # keyword arguments of the class
    sample_rate: int = 16000  # must equal the encoder's sampling_rate
    temporal_pooling_type: str = 'mean'
    feature_d: Optional[int] = None  # informational

    def module_and_class(self) -> tuple:
        """(module name, class name) from target, else from module and class_name.

        Raises:
            EvarError: target not of the form package.module:Class, or neither form given.
        """
        if self.target:
            module, _, cls = self.target.partition(':')
            if not module or not cls:
                raise EvarError(f'xares: target must be package.module:Class, got {self.target!r}.')
            return module, cls
        if not self.module or not self.class_name:
            raise EvarError('xares: set target: package.module:Class (or module and class_name).')
        return self.module, self.class_name


class XARESAdapter(AudioRepr):
    """Any X-ARES encoder (jimbozhang/xares): waves [B, N] float32 at sample_rate Hz -> Frames [B, T, output_dim],
    ceil(n / hop) frames valid for a clip of n samples (clipped to [1, T]); each distinct clip length runs on its
    unpadded audio (with an all-ones attention mask when forward takes one). The encoder is kept in eval mode.

    Raises:
        EvarError: a bad target, an import failure, a missing class, init_args the class refuses, or an encoder
            lacking sampling_rate / output_dim / hop_size_in_ms or at another rate than the config's (at
            construction).
    """
    Params = XARESParams

    def __init__(self, params: XARESParams):
        super().__init__(params)
        module_name, class_name = params.module_and_class()
        cls = getattr(_import(module_name, 'xares'), class_name, None)
        if cls is None:
            raise EvarError(f'xares: module {module_name!r} has no class {class_name!r}.')
        try:
            encoder = cls(**params.init_args)
        except TypeError as e:
            raise EvarError(f'xares: {class_name}(**init_args) failed: {e}') from e
        missing = [a for a in ('sampling_rate', 'output_dim', 'hop_size_in_ms') if getattr(encoder, a, None) is None]
        if missing:
            raise EvarError(f'xares: encoder {class_name} lacks attribute(s) {missing} of the X-ARES encoder API.')
        if int(encoder.sampling_rate) != params.sample_rate:
            raise EvarError(f'xares: the encoder\'s sampling_rate is {encoder.sampling_rate}, the config says '
                            f'{params.sample_rate}; set sample_rate: {encoder.sampling_rate} in the config.')
        self.encoder = encoder
        if isinstance(encoder, nn.Module):
            encoder.eval()
        forward = encoder.forward if hasattr(encoder, 'forward') else encoder.__call__
        params_ = [p for p in inspect.signature(forward).parameters.values()
                   if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.takes_mask = len(params_) >= 2
        self.hop_samples = float(encoder.hop_size_in_ms) * params.sample_rate / 1000.0

    @property
    def frame_hop_sec(self) -> float:
        """The encoder's hop_size_in_ms (X-ARES API)."""
        return float(self.encoder.hop_size_in_ms) / 1000.0

    @property
    def embedding_dim(self) -> int:
        """The encoder's output_dim (X-ARES API)."""
        return int(self.encoder.output_dim)

    @classmethod
    def weight_paths(cls, params) -> list:
        """The encoder module's source file, found without importing it ([] when the target is not valid)."""
        try:
            module_name, _ = params.module_and_class()
        except EvarError:
            return []
        return _source_file(module_name)

    def train(self, mode: bool = True):
        """nn.Module.train, except that the wrapped encoder stays in eval mode (no dropout or BatchNorm updates)."""
        super().train(mode)
        if isinstance(self.encoder, nn.Module):
            self.encoder.eval()
        return self

    def _run(self, audio):
        if self.takes_mask:
            out = self.encoder(audio, torch.ones(audio.shape, dtype=torch.long, device=audio.device))
        else:
            out = self.encoder(audio)
        if isinstance(out, (tuple, list)):  # some encoders return (embeddings, mask)
            out = out[0]
        emb = _tensor(out, audio.device)
        valid_n = min(max(1, math.ceil(audio.shape[1] / self.hop_samples)), emb.shape[1])
        valid = lengths_to_mask(torch.full((emb.shape[0],), valid_n, device=audio.device), emb.shape[1])
        return emb, valid

    def encode(self, wav, lengths) -> Frames:
        """Frames of waves [B, N] with `lengths` [B] samples (the waves themselves are the features): the encoder's
        [B, T, D] as float32, padded and masked per clip.

        Raises:
            EvarError: the encoder returns embeddings that are not [n, T, D] for n clips.
        """
        return _by_length(wav, lengths, self._run)
