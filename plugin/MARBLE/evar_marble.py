"""An evar model as a MARBLE v2 encoder (MARBLE: Yuan et al., NeurIPS 2023 Datasets and Benchmarks;
v2: https://github.com/a43992899/MARBLE), without patching MARBLE.

MARBLE v2 builds every part of a run from `class_path`/`init_args` entries of its YAML (marble.core.utils.
instantiate_from_config imports any dotted path), so `class_path: evar_marble.EvarEncoder` with this folder on
PYTHONPATH is all it needs. Its tasks call `encoder(x)` with the DataModule's batch x, float32 [B, C, T] (C = 1 for
mono, the clip zero-padded to clip_seconds) at the task's sample_rate, and pass the result to the embedding
transforms, which index it as a sequence of layers, each [B, T', H] (LayerSelector stacks the chosen ones into
[B, L, T', H]; TimeAvgPool averages T'). Facts from MARBLE commit 938c03a6a3d3c0766a666b89d145735691b2d803
(marble/core/base_encoder.py, base_task.py, modules/transforms.py, tasks/GTZANGenre/).

The encoder is frozen and deterministic: the evar model stays in eval mode whatever Lightning sets, runs without
gradients and in float32 (outside the trainer's autocast), crops nothing, and masks the padding past `input_len` when
the caller gives it. A model that standardises its front end (BYOL-A) needs `norm_stats` in init_args: compute them
once with `python evar_marble.py stats CONFIG TRAIN_JSONL` (every training clip, whole, in file order).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from evar.errors import EvarError

MARBLE_COMMIT = '938c03a6a3d3c0766a666b89d145735691b2d803'
LEVELS = ('clip', 'frame')

try:  # MARBLE's abstract encoder when MARBLE is installed; a plain nn.Module (the same call contract) otherwise
    from marble.core.base_encoder import BaseEncoder as _HostEncoder
except ImportError:
    _HostEncoder = nn.Module


def resolve_config(config: str) -> Path:
    """The evar model YAML `config`: the path as given when it exists, else, for a relative path, the same path in
    the evar project folder (so a MARBLE YAML can say `config/byola.yaml` whatever folder MARBLE runs from).

    Raises:
        EvarError: neither exists.
    """
    import evar

    path = Path(config).expanduser()
    if path.is_file():
        return path
    in_evar = Path(evar.__file__).resolve().parents[1] / path
    if not path.is_absolute() and in_evar.is_file():
        return in_evar
    raise EvarError(f'EvarEncoder: evar config {config} does not exist (looked in {Path.cwd()} and {in_evar.parent}).')


def build_model(config: str, options: str = ''):
    """An evar model (an `evar.models.base.AudioRepr`) from a YAML (see `resolve_config`) and evar's `--options`
    string, through evar's config loader and model registry.

    Raises:
        EvarError: a missing or bad YAML, an unknown key, or a model that cannot be built (missing weights).
    """
    from evar.config import load_config
    from evar.models import create_model

    cfg = load_config(resolve_config(config), options)
    return create_model(cfg.audio_repr, params=cfg.params)


class EvarEncoder(_HostEncoder):
    """MARBLE encoder wrapping a frozen evar model.

    Args:
        config: the evar model YAML (e.g. /path/to/evar/config/byola.yaml).
        options: evar's `--options` overrides ('weight_file=/w.pth').
        sample_rate: Hz of the waves MARBLE's DataModule yields (its task `sample_rate`); must be the model's.
        norm_stats: [mean, std] of the front end for models that standardise it with training statistics (BYOL-A;
            see `norm_stats_from_jsonl`); ignored by models with fixed statistics.
        level: 'clip' (default): one hidden state [B, 1, D], evar's pooled clip embedding (the config's
            temporal_pooling_type over the valid frames), so TimeAvgPool leaves it as it is; 'frame': the frames
            [B, T', D] at the model's hop, zero past each clip's valid frames when `input_len` is given
            (TimeAvgPool then averages those zeros too: 'clip' pools the valid frames only).

    Attributes:
        num_features: D, the `in_dim` of MARBLE's decoder.
        sample_rate: the model's rate in Hz.

    Raises:
        EvarError: unknown level, a rate other than the model's, or norm_stats missing where the model needs them.
    """

    def __init__(self, config: str, options: str = '', sample_rate: int = 16000,
                 norm_stats: Optional[Sequence[float]] = None, level: str = 'clip'):
        super().__init__()
        if level not in LEVELS:
            raise EvarError(f'EvarEncoder level must be one of {list(LEVELS)}, got {level!r}.')
        self.model = build_model(config, options)
        if int(sample_rate) != self.model.sample_rate:
            raise EvarError(f'EvarEncoder: the task yields {sample_rate} Hz audio but {config} takes '
                            f'{self.model.sample_rate} Hz; set the DataModule\'s sample_rate (and this sample_rate) '
                            f'to {self.model.sample_rate}.')
        if self.model.needs_norm_stats and self.model.norm_mean is None:
            if norm_stats is None or len(norm_stats) != 2:
                raise EvarError(f'EvarEncoder: {config} standardises its front end with training statistics; set '
                                'init_args.norm_stats to [mean, std] (python evar_marble.py stats CONFIG TRAIN_JSONL '
                                f'prints them), got {norm_stats!r}.')
            self.model.set_norm_stats(float(norm_stats[0]), float(norm_stats[1]))
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()
        self.level = level
        self.sample_rate = self.model.sample_rate
        self.num_features = int(self.model.embedding_dim)

    def train(self, mode: bool = True):
        """Lightning's train()/eval() of the task: the wrapped model stays in eval mode (frozen: no dropout, and
        BatchNorm keeps its pretrained statistics)."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, x: torch.Tensor, input_len: Optional[torch.Tensor] = None, *args, **kwargs) -> tuple:
        """Hidden states of a batch, as MARBLE's embedding transforms take them.

        Args:
            x: waves [B, T] or [B, C, T] (channels are averaged) at `sample_rate`, any float dtype.
            input_len: optional [B] valid samples of each clip; None: every sample of x is audio.

        Returns:
            A 1-tuple holding float32 [B, 1, D] ('clip') or [B, T', D] ('frame').

        Raises:
            EvarError: x is not 2-D or 3-D, or input_len does not have B entries.
        """
        if x.ndim == 3:
            x = x.mean(dim=1)
        if x.ndim != 2:
            raise EvarError(f'EvarEncoder: expected waves [B, T] or [B, C, T], got shape {tuple(x.shape)}.')
        n = x.shape[-1]
        lengths = torch.full((x.shape[0],), n, dtype=torch.long, device=x.device) if input_len is None else \
            torch.as_tensor(input_len, device=x.device).long().clamp(1, n)
        if lengths.shape != (x.shape[0],):
            raise EvarError(f'EvarEncoder: input_len must have {x.shape[0]} entries, got shape {tuple(lengths.shape)}.')
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            wav = x.float()
            if self.level == 'clip':
                return (self.model.embed(wav, lengths).float().unsqueeze(1),)
            frames = self.model(wav, lengths)
            return (frames.embeddings.float() * frames.mask.unsqueeze(-1),)


def jsonl_audio_paths(jsonl: str) -> list:
    """The `audio_path` of every line of a MARBLE metadata .jsonl, in file order.

    Raises:
        EvarError: the file is missing, or a line is not JSON with an audio_path.
    """
    path = Path(jsonl)
    if not path.is_file():
        raise EvarError(f'MARBLE metadata {path} does not exist.')
    out = []
    for k, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(str(json.loads(line)['audio_path']))
        except (ValueError, KeyError, TypeError):
            raise EvarError(f'{path} line {k}: expected a JSON object with "audio_path".') from None
    if not out:
        raise EvarError(f'MARBLE metadata {path} lists no clips.')
    return out


def norm_stats_from_jsonl(config: str, jsonl: str, options: str = '', root: str = '.',
                          device: str = 'cpu') -> tuple:
    """(mean, std) of the model's front end over every clip of a MARBLE training .jsonl, each clip whole, resampled
    to the model's rate, padding excluded (evar's statistics pass, `evar.embed.extract.compute_norm_stats`).
    Clip paths are relative to `root` (MARBLE's folder) unless absolute. Models with fixed statistics return them;
    models without a standardised front end return None.

    Raises:
        EvarError: bad config or jsonl, or an unreadable clip (named).
    """
    import numpy as np

    from evar.data import ClipDataset
    from evar.embed.extract import ExtractSettings, compute_norm_stats

    model = build_model(config, options).to(device)
    if not model.needs_norm_stats:
        return None
    files = jsonl_audio_paths(jsonl)
    dataset = ClipDataset(Path(root), files, model.sample_rate, unit_sec=1.0, crop_policy='full')
    settings = ExtractSettings(batch_size=16, num_workers=0, device=device, progress=False)
    return compute_norm_stats(model, dataset, np.arange(len(files)), settings)


def main(argv=None) -> int:
    """`python evar_marble.py stats CONFIG TRAIN_JSONL [--options ...] [--root .]`: prints the norm_stats line to put
    in the encoder's init_args. Returns the exit status (2 and one `Error:` line on bad input)."""
    parser = argparse.ArgumentParser(description='Helpers for evar models inside MARBLE v2.')
    sub = parser.add_subparsers(dest='command', required=True)
    stats = sub.add_parser('stats', help='front-end statistics over a training .jsonl (for BYOL-A and the like)')
    stats.add_argument('config')
    stats.add_argument('jsonl')
    stats.add_argument('--options', default='')
    stats.add_argument('--root', default='.', help='the folder clip paths are relative to (MARBLE\'s)')
    args = parser.parse_args(argv)
    try:
        result = norm_stats_from_jsonl(args.config, args.jsonl, args.options, args.root)
    except EvarError as e:
        print(f'Error: {e}', file=sys.stderr)
        return 2
    if result is None:
        print(f'{args.config}: the model needs no norm_stats.')
    else:
        print(f'norm_stats: [{result[0]:.7g}, {result[1]:.7g}]')
    return 0


if __name__ == '__main__':
    sys.exit(main())
