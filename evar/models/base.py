"""The audio representation (AR) contract every model wrapper implements (`AudioRepr`), and helpers shared by them.

An AR turns waves [B, N] with their lengths into frame embeddings [B, T, D] plus a valid-frame mask [B, T], so
padding never enters a pooled clip embedding. The work is split in two so normalisation statistics can be taken
from the front end's output in the same pass that feeds the model:

    features(wav, lengths) -> (feats, feat_lengths)   fixed front end (spectrogram), no learned weights
    encode(feats, feat_lengths) -> Frames             the network, with layer selection
"""

from __future__ import annotations

import hashlib
import pickle
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from ..errors import EvarError

POOLINGS = ('mean', 'max', 'mean_max', 'mean+max', 'mean_sigmoid')


@dataclass
class Frames:
    """An encoder's output: frame embeddings [B, T, D] and their mask [B, T] (bool, True where the frame comes from
    the clip's own audio; frames past it may hold anything and are never pooled)."""
    embeddings: torch.Tensor  # [B, T, D]
    mask: torch.Tensor  # [B, T], True where the frame comes from real audio


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, max_len] bool mask, True at positions below each of `lengths` [B]."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def pool(frames: Frames, how: str) -> torch.Tensor:
    """Clip embeddings [B, D] from valid frames only. 'mean_max' (EVAR's name) = mean + max, as BYOL-A does;
    'mean_sigmoid' = sigmoid of the mean, what EVAR's Dasheng wrapper takes (the hub model's `logits` with no output
    layer)."""
    x, mask = frames.embeddings, frames.mask.unsqueeze(-1)
    if how not in POOLINGS:
        raise EvarError(f'temporal_pooling_type must be one of {list(POOLINGS)}, got {how!r}.')
    out = 0
    if how in ('mean', 'mean_max', 'mean+max', 'mean_sigmoid'):
        out = (x * mask).sum(1) / mask.sum(1).clamp(min=1)
    if how in ('max', 'mean_max', 'mean+max'):
        out = out + x.masked_fill(~mask, torch.finfo(x.dtype).min).amax(1)
    if how == 'mean_sigmoid':
        out = out.sigmoid()
    return out


def select_layers(layers: list, output_layers: Any, average: bool = False) -> torch.Tensor:
    """Layer outputs chosen by `output_layers` (index, list of indices, or 'all'): concatenated, or averaged."""
    if output_layers == 'all':
        chosen = layers
    else:
        indices = output_layers if isinstance(output_layers, (list, tuple)) else [output_layers]
        try:
            chosen = [layers[int(i)] for i in indices]
        except (IndexError, ValueError, TypeError):
            raise EvarError(f'output_layers {output_layers!r} is out of range: the model has {len(layers)} layers '
                            f'(indices 0..{len(layers) - 1}, negative from the end, or "all").') from None
    if len(chosen) == 1:
        return chosen[0]
    return torch.stack(chosen).mean(0) if average else torch.cat(chosen, dim=-1)


def selected_width(widths: list, output_layers: Any, average: bool = False) -> int:
    """D of `select_layers` over layers of these `widths` (the last dimension of each), by the same rules and with
    the same errors: a declared embedding size that cannot disagree with what `encode` selects."""
    return int(select_layers([torch.empty(0, int(w)) for w in widths], output_layers, average).shape[-1])


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read `chunk` bytes at a time."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def find_package_file(package: str, relative: str) -> Optional[Path]:
    """A data file inside an installed package, located without importing the package (None if absent)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / relative
        if path.is_file():
            return path
    return None


class _Opaque(dict):
    """Stands in for any non-tensor object of a checkpoint (hyper-parameter containers, argparse namespaces)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state):
        pass


_TENSOR_GLOBALS = {
    ('collections', 'OrderedDict'), ('torch._utils', '_rebuild_tensor_v2'), ('torch._utils', '_rebuild_parameter'),
    ('torch._utils', '_rebuild_parameter_with_state'), ('torch._tensor', '_rebuild_from_type_v2'),
    ('torch', 'Size'), ('torch', 'Tensor'), ('torch.nn.parameter', 'Parameter'),
}


class _TensorOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals needed to rebuild tensors; every other object becomes an inert `_Opaque`, so no
    code from the file runs. Official checkpoints often pickle lightning/argparse/fairseq config objects that
    torch's weights-only loader refuses, though the tensors themselves are plain."""

    def find_class(self, module, name):
        if (module, name) in _TENSOR_GLOBALS or (module == 'torch' and name.endswith('Storage')):
            return super().find_class(module, name)
        return _Opaque


_tensor_only_pickle = types.SimpleNamespace(__name__='evar_tensor_only_pickle', Unpickler=_TensorOnlyUnpickler,
                                            load=pickle.load)


def read_tensors(path: Path, model_name: str):
    """torch.load of a checkpoint, weights only; where the file also pickles other objects, those are read as inert
    placeholders (never imported or run) and the tensors kept."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        try:
            return torch.load(path, map_location='cpu', weights_only=False, pickle_module=_tensor_only_pickle)
        except Exception as e:
            raise EvarError(f'{model_name}: cannot read weight file {path}: {e}') from e
    except Exception as e:
        raise EvarError(f'{model_name}: cannot read weight file {path}: {e}') from e


def require_file(path: Optional[str], model_name: str, where: str, key: str = 'weight_file',
                 what: str = 'the weights', folder: str = 'external/') -> Path:
    """`path` as a Path when the file is there; else one error naming the YAML `key`, where to put the file and
    where its publisher distributes it."""
    if not path:
        raise EvarError(f'{model_name}: {key} is not set. Put {what} under {folder} and set {key}; '
                        f'the publisher distributes {what} at {where}.')
    path = Path(path).expanduser()
    if not path.is_file():
        text = str(path)
        if text.endswith('/random') or text == 'random':  # EVAR's YAMLs name '<folder>/random' for random weights
            hint = (f" ('{path.name}' is EVAR's marker for random initialisation; evar reads a checkpoint file: "
                    'save random weights in the official layout to compare untrained models)')
        elif not path.suffix and text.count('/') == 1 and not path.parent.exists():  # owner/name: a hub id
            hint = f' ({path} looks like a Hugging Face hub id, as EVAR names it; evar reads the checkpoint file)'
        else:
            hint = ''
        raise EvarError(f'{model_name}: {key.replace("_", " ")} {path} does not exist{hint}. Put it there (under '
                        f'{folder}) or set {key}; the publisher distributes it at {where}.')
    return path


def load_checkpoint(path: Optional[str], model_name: str, where: str) -> dict:
    """A state dict read safely (weights only); a missing file says where to put it and where to get it."""
    path = require_file(path, model_name, where)
    state = read_tensors(path, model_name)
    for key in ('state_dict', 'model', 'body'):  # common wrappers around the tensors
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise EvarError(f'{model_name}: weight file {path} does not hold a state dict.')
    return state


def load_strict(module: nn.Module, state: dict, source: str) -> None:
    """load_state_dict(strict) with one message listing missing, unexpected and mis-shaped tensors."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
              for k in sorted(set(own) & set(state)) if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        raise EvarError(f'Weight file {source} does not match the architecture. Missing: {missing[:8]}; '
                        f'unexpected: {unexpected[:8]}; shape mismatches: {shapes[:8]}.')
    module.load_state_dict(state, strict=True)


class AudioRepr(nn.Module):
    """Base class of every model: waves in, frame embeddings with a valid-frame mask out.

    A subclass sets `Params` (a frozen dataclass of its config keys; `create_model` builds it from a YAML and passes
    it to `__init__`) and implements `encode`, usually `features`, and the `frame_hop_sec` and `embedding_dim`
    properties. `python -m evar.check` checks any model against this contract, and tests/test_contract.py checks
    every registered one with tiny random weights.

    The contract:
    - `features` -> `encode` is the whole model (`forward`); `embed` pools its valid frames.
    - A clip's frames never depend on the other clips of its batch or on the samples past its length.
    - No `torch.no_grad`, `torch.inference_mode` or numpy inside `features` / `encode` (front ends without learned
      weights are plain torch too): a backward through `embed` reaches the network's parameters when a caller
      fine-tunes, and the caller chooses inference mode (extraction runs under `torch.inference_mode()`).
    - Everything stays on the device of the input and of the module's parameters.
    - Models whose front end is standardised with statistics of the task's training split set `needs_norm_stats`;
      the embedding code sums `stat_sums` over training clips, then calls `set_norm_stats`, and calls
      `reset_norm_stats` before the next fold. `uses_task_stats(params)` says so before the model is built (the
      cache key depends on it); a family whose need depends on its params overrides it.
    """
    Params: ClassVar[type]
    needs_norm_stats: ClassVar[bool] = False  # True: `features` must be standardised with training-split stats
    # Part of the embedding cache key: bump it when a change to the code changes the embeddings.
    cache_version: ClassVar[int] = 1
    # Where fine-tuning's input augmentations act: 'spectrogram' for families whose `encode` passes the normalised
    # [B, F, T] network input through `augment_input`; None for the others (wave input), which fine-tuning warns of.
    augment_point: ClassVar[Optional[str]] = None

    def __init__(self, params):
        super().__init__()
        self.params = params
        self.norm_mean: Optional[float] = None
        self.norm_std: Optional[float] = None
        self.input_augment = None  # a callable on [B, F, T] set by fine-tuning (evar.training.augment.InputAugment)

    @property
    def sample_rate(self) -> int:
        """Sample rate in Hz of the waves `features` takes."""
        return int(self.params.sample_rate)

    @property
    def pooling(self) -> str:
        """How `embed` pools frames: 'mean', 'max' or 'mean_max' (= 'mean+max', the sum of both; see `pool`)."""
        return getattr(self.params, 'temporal_pooling_type', 'mean_max')

    @property
    def frame_hop_sec(self) -> Optional[float]:
        """Seconds between consecutive frame embeddings of `encode`, or None where the frames are not evenly spaced
        in time (one embedding per clip or per crop, tokens that are not time steps); every registered family
        overrides this and says why where it is None. `python -m evar.check` compares it with the frames of a 10 s
        clip. This base value (None) means "not declared"."""
        return None

    @property
    def frame_window_sec(self) -> float:
        """Seconds of audio a frame needs before it exists (0 for frames that start with the clip): a clip of n s
        then has (n - window) / hop + 1 frames (OpenL3's 1 s windows centred from 0 s: 0.5)."""
        return 0.0

    @property
    def embedding_dim(self) -> int:
        """D of the clip embeddings [B, D] that `embed` returns and of the frames [B, T, D] of `encode`; every pooling
        keeps D ('mean_max' adds the mean and the max). Follows `output_layers` / `layer_average` where a model has
        them.

        Raises:
            NotImplementedError: the class does not declare it.
        """
        raise NotImplementedError(f'{type(self).__name__} does not declare embedding_dim (the D of its embeddings).')

    @classmethod
    def weight_paths(cls, params) -> list:
        """Files whose content determines the outputs; the embedding cache hashes them (not their paths)."""
        path = getattr(params, 'weight_file', None)
        return [Path(path).expanduser()] if path else []

    # The two stages.
    def features(self, wav: torch.Tensor, lengths: torch.Tensor) -> tuple:
        """The front end: (feats, feat_lengths) from waves.

        Args:
            wav: [B, N] float32 waves at `sample_rate`, amplitude in [-1, 1], zero-padded (or anything) past each
                clip's length.
            lengths: [B] int64 valid samples of each clip (>= 1).

        Returns:
            feats: the front end's output, usually [B, F, T] (a spectrogram: F bins by T frames; the base class
                passes the waves [B, N] through), values past each clip's `feat_lengths` being padding.
            feat_lengths: [B] int64 valid positions of each clip along feats' last axis.
        """
        return wav, lengths

    def encode(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> Frames:
        """The network on `features`' output: Frames with embeddings [B, T, D] (D = `embedding_dim`, floating point)
        and mask [B, T] (bool, at least one valid frame per clip).

        Raises:
            EvarError: a setting the network cannot honour (e.g. `output_layers` out of range), or normalisation
                statistics that are needed and not set.
        """
        raise NotImplementedError

    # Normalisation statistics over valid frames of the front end's [B, F, T] output.
    @classmethod
    def uses_task_stats(cls, params) -> bool:
        """Whether a model built from `params` standardises with the task's training-split statistics (its
        embeddings then depend on which clips train): `needs_norm_stats` unless `params` fix `norm_stats`."""
        return cls.needs_norm_stats and getattr(params, 'norm_stats', None) is None

    def stat_sums(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        """[3] float64 (sum, sum of squares, count) over the valid frames of `features`' output [B, F, T]; summed over
        batches, `stats_from_sums` turns them into (mean, std)."""
        mask = lengths_to_mask(feat_lengths, feats.shape[-1]).unsqueeze(1).to(feats.dtype)
        x = feats.double() * mask
        count = mask.sum() * feats.shape[1]
        return torch.stack([x.sum(), (x * feats.double()).sum(), count.double()])

    def set_norm_stats(self, mean: float, std: float) -> None:
        """Standardise the front end's output with this mean and std (in the front end's units, e.g. log-mel)."""
        self.norm_mean, self.norm_std = float(mean), float(std)

    def fixed_norm_stats(self) -> Optional[tuple]:
        """(mean, std) the model always uses, or None where they come from the task's training split: the config's
        `norm_stats` when it has that key and sets it (a subclass may add its checkpoint's)."""
        stats = getattr(self.params, 'norm_stats', None)
        return (float(stats[0]), float(stats[1])) if stats is not None else None

    def reset_norm_stats(self) -> None:
        """Back to the statistics the model was built with: the fixed ones (`fixed_norm_stats`), else none, so the
        next extraction computes them from its training rows (the embedding code calls this before each fold)."""
        fixed = self.fixed_norm_stats()
        self.norm_mean, self.norm_std = fixed if fixed is not None else (None, None)

    def normalize(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        """(feats - mean) / std of `features`' output [B, F, T], zero past each clip's `feat_lengths`.

        Raises:
            EvarError: the statistics are not set.
        """
        if self.norm_mean is None:
            raise EvarError(f'{type(self).__name__}: normalisation statistics are not set.')
        x = (feats - self.norm_mean) / self.norm_std
        return x * lengths_to_mask(feat_lengths, x.shape[-1]).unsqueeze(1)  # padding stays exactly zero

    # Fine-tuning hooks.
    def augment_input(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised network input [B, F, T] through `input_augment` in training mode; x itself in eval mode or
        when no augmentation is set. Families with `augment_point == 'spectrogram'` call it right after their
        normalisation (transposing around the call where their layout is [B, T, F]), so embeddings never change."""
        if self.training and self.input_augment is not None:
            return self.input_augment(x)
        return x

    def patch_embedding(self) -> Optional[nn.Module]:
        """The module that turns the input into tokens (a patch embedding or convolutional stem), which
        `--freeze_embed` freezes; None where the family has no such part (the base value)."""
        return None

    def set_training_mask(self, ratio: float) -> None:
        """Drop a random `ratio` of the patch tokens before the transformer in training mode (M2D's random masking
        while fine-tuning); eval mode is unaffected.

        Raises:
            EvarError: the family does not support it (only M2D and MSM-MAE do), or ratio is outside [0, 1).
        """
        raise EvarError(f'{type(self).__name__}: training_mask is supported by the M2D and MSM-MAE families only '
                        f'(models with a patch-token transformer); set training_mask to 0 for this model.')

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor) -> Frames:
        """Frames of waves [B, N] with lengths [B] (see `features` and `encode`)."""
        return self.encode(*self.features(wav, lengths))

    def embed(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Clip embeddings [B, `embedding_dim`]: the valid frames pooled by `pooling`."""
        return pool(self(wav, lengths), self.pooling)


def stats_from_sums(sums: torch.Tensor) -> tuple:
    """(mean, std) from summed `stat_sums`; std is floored at 1e-8 (a silent training split).

    Raises:
        EvarError: no frame was summed (no training clip to take the statistics from).
    """
    total, total_sq, count = (float(v) for v in sums)
    if count <= 0:
        raise EvarError('The model standardises its input with statistics of the training split, which has no '
                        'clip here; set norm_stats: [mean, std] in the config (or --options).')
    mean = total / count
    std = max((total_sq / count - mean * mean), 0.0) ** 0.5
    return mean, max(std, 1e-8)
