"""EAT (Chen et al., IJCAI 2024): the Efficient Audio Transformer's encoder, loading the official weights strictly.

Architecture (from the official Hugging Face release worstchan/EAT-base_epoch30_pretrain, whose remote code EVAR
runs, and the fairseq model of github.com/cwx-worst-one/EAT): 16x16 patches of a [1024 frames x 128 mel] input
(64 time columns x 8 frequency rows, flattened time-major), fixed 2-D sin-cos positions added to the patches, a
learned CLS token prepended, LayerNorm (eps 1e-6), then 12 post-norm blocks (x + attn(x) -> norm1 -> + mlp ->
norm2, data2vec 2.0's layout). The embedding size, depth, MLP width and positional table come from the checkpoint's
shapes; the number of heads from the `config.json` beside the weights (else `num_heads`, else embed_dim / 64).

Front end (official `feature_extract.py`, training data set and EVAR's ar_eat.py): the clip's mean removed, then
Kaldi fbank (25 ms Hann window (non-periodic), 10 ms shift, per-frame DC removal, pre-emphasis 0.97, |FFT 512|^2,
128 Kaldi mel bins from 20 Hz to 8 kHz, log floored at float eps), evar.frontend.KaldiFbank; frames past the
clip's end are 0 and the result is normalised as (x + 4.268) / (2 * 4.569).

Windows: the model takes 1024 frames (10.24 s). A clip is cut into 1024-frame windows from its start (what the
chunking loop of EVAR's wrapper does; the official script truncates at one window) and each window is padded with
zero fbank frames before normalisation, as the official code pads every input to 1024 frames. Each window is run
whole and alone, exactly the official input, so a clip never sees other clips of a batch.

Frames (`frames`): 'patches' (default) gives the patch tokens of the last block in the official time-major order,
8 per 16-frame column (the official `granularity='frame'`, ~50 per second); tokens of columns that hold only
padding are masked out, so pooling never averages over padding. 'cls' gives one CLS token per window (the official
`granularity='utterance'`). 'all' gives the CLS and every patch token of each window, padding included: with
`temporal_pooling_type: mean` that is EVAR's own clip embedding for clips of at most 10.24 s.

Weights: the Hugging Face folder (`model.safetensors` or `pytorch_model.bin`, keys `model.*`, plus `config.json`),
or a file with those keys, or a fairseq checkpoint's state dict (`modality_encoders.IMAGE.*`, `blocks.*`), which is
mapped onto the same names. Heads and pre-training-only parts (classifier, CNN decoder, EMA teacher, projections)
are dropped by name; everything else must match exactly.

Checked against the official code (the Hugging Face remote code `EAT` module with timm 1.0.15, random init, its
state dict saved as the Hugging Face folder holds it and loaded strictly here) and torchaudio.compliance.kaldi.fbank,
on 6 real ESC-50 clips of 1.0-5.0 s and one of 25 s (3 windows), all embedded as one padded batch here:
`python benchmarks/parity_eat.py --official <folder holding eat_hf/> --audio_glob '<clips>'`; fbank identical
(0.0), frame embeddings (every window, padded ones included) within 7.0e-07 relative, EVAR's clip embedding (mean
of a window's 513 tokens) within 1.6e-07 relative.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..errors import EvarError
from ..frontend import KaldiFbank
from .base import AudioRepr, Frames, lengths_to_mask, load_checkpoint, load_strict, select_layers, selected_width
from .vit import Attention, Mlp, PatchEmbed

WEIGHTS_URL = ('https://huggingface.co/worstchan/EAT-base_epoch30_pretrain (Hugging Face folder: model.safetensors '
               'and config.json; fairseq checkpoints are linked from https://github.com/cwx-worst-one/EAT)')
WEIGHT_NAMES = ('model.safetensors', 'pytorch_model.bin')
FRAME_MODES = ('patches', 'cls', 'all')
WINDOWS_PER_PASS = 8  # windows run together: bounds memory on long clips (attention is ~12 MB per window and head)


@dataclass(frozen=True)
class EATParams:
    """YAML keys of `eat`. The encoder's sizes come from the checkpoint's shapes (heads: see num_heads).

    Keys:
        weight_file: the Hugging Face folder (model.safetensors or pytorch_model.bin, config.json) or a weight file.
        sample_rate: Hz of the input waves (16000, the training rate).
        n_mels: Kaldi mel bins (128; a multiple of the patch size).
        window: the fbank window; only 'hanning' (the official one) is accepted.
        target_length: fbank frames per window (1024: 10.24 s at the 10 ms shift; a multiple of the patch size).
        norm_mean, norm_std: fixed log-fbank statistics; inputs are (x - norm_mean) / (2 norm_std).
        num_heads: attention heads (None: config.json's num_heads, else embed_dim // 64).
        frames: 'patches', 'cls' or 'all' (see the module docstring).
        output_layers: block index (-1: the last, the official extract_features), a list of indices, or 'all'.
        layer_average: with several output_layers, average them instead of concatenating.
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
        feature_d: not used beyond a warning when it differs from the checkpoint's width.
    """
    weight_file: Optional[str] = None  # the Hugging Face folder, or a weight file
    sample_rate: int = 16000
    n_mels: int = 128
    window: str = 'hanning'  # the official fbank window (EVAR's configs carry this key); nothing else is supported
    target_length: int = 1024  # fbank frames per window (the positional table covers up to 768 columns of 16)
    norm_mean: float = -4.268  # AudioSet fbank statistics used in pre-training; inputs are (x - mean) / (2 std)
    norm_std: float = 4.569
    num_heads: Optional[int] = None  # None: config.json beside the weights, else embed_dim // 64
    frames: str = 'patches'  # 'patches', 'cls' or 'all' (see the module docstring)
    output_layers: Any = -1  # block outputs: -1 the last (the official extract_features), 'all', or a list
    layer_average: bool = False
    temporal_pooling_type: str = 'mean'
    feature_d: Optional[int] = None  # informational (EVAR configs carry it)


# ----------------------------------------------------------------------------------------------------------------
# The encoder, in the key names of the official Hugging Face module (`model.` prefix stripped).

class FixedPositions(nn.Module):
    """Holds the fixed positional table `positions` [1, n_positions, dim] under the official key name (the
    checkpoints store it; the strict load checks it against `sincos_positions`' shape)."""
    def __init__(self, n_positions: int, dim: int):
        super().__init__()
        self.register_buffer('positions', torch.zeros(1, n_positions, dim))  # stored in the official checkpoints


def sincos_positions(dim: int, time_columns: int, freq_rows: int) -> torch.Tensor:
    """The official fixed table for a (time, frequency) patch grid flattened time-major: the first half of the
    channels encodes the frequency row, the second the time column, each as [sin | cos] over 10000^(-i / (dim/4))."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    t, f = torch.meshgrid(torch.arange(time_columns, dtype=torch.float64),
                          torch.arange(freq_rows, dtype=torch.float64), indexing='ij')

    def encode(pos):
        angle = pos.reshape(-1, 1) * omega[None]
        return torch.cat([angle.sin(), angle.cos()], dim=1)

    return torch.cat([encode(f), encode(t)], dim=1).to(torch.float32)[None]


class PostNormBlock(nn.Module):
    """data2vec 2.0's block with layer_norm_first=False: x + attn(x) -> norm1 -> r; norm2(r + mlp(r))."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens [N, L, dim] -> [N, L, dim] (no key mask: EAT windows are run whole)."""
        r = self.norm1(x + self.attn(x))
        return self.norm2(r + self.mlp(r))


class EATEncoder(nn.Module):
    """EAT's encoder (official Hugging Face key names): patch embedding, fixed sin-cos positions, a learned CLS
    token (`extra_tokens`), pre_norm and `depth` post-norm blocks; positions for up to max_time_columns columns."""
    def __init__(self, dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_hidden: int = 3072,
                 patch: int = 16, freq_rows: int = 8, max_time_columns: int = 768, eps: float = 1e-6):
        super().__init__()
        self.local_encoder = PatchEmbed((patch, patch), 1, dim)
        self.extra_tokens = nn.Parameter(torch.zeros(1, 1, dim))
        self.fixed_positional_encoder = FixedPositions(max_time_columns * freq_rows, dim)
        self.fixed_positional_encoder.positions.copy_(sincos_positions(dim, max_time_columns, freq_rows))
        self.pre_norm = nn.LayerNorm(dim, eps=eps)
        self.blocks = nn.ModuleList(PostNormBlock(dim, num_heads, mlp_hidden, eps) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> list:
        """x [N, 1, frames, mels] normalised windows -> every block's output [N, 1 + patches, D] (CLS first).

        Raises:
            EvarError: more patches than the positional table holds.
        """
        x = self.local_encoder(x)
        positions = self.fixed_positional_encoder.positions
        if x.shape[1] > positions.shape[1]:
            raise EvarError(f'EAT: a window of {x.shape[1]} patches exceeds the positional table '
                            f'({positions.shape[1]}); lower target_length.')
        x = x + positions[:, :x.shape[1]]
        x = self.pre_norm(torch.cat([self.extra_tokens.expand(x.shape[0], -1, -1), x], dim=1))
        layers = []
        for block in self.blocks:
            x = block(x)
            layers.append(x)
        return layers


# ----------------------------------------------------------------------------------------------------------------
# Weights.

def weight_file_of(weight_file: Optional[str]) -> Optional[Path]:
    """The file holding the tensors: weight_file itself, or the first of WEIGHT_NAMES inside a folder."""
    if not weight_file:
        return None
    path = Path(weight_file).expanduser()
    if path.is_dir() or (not path.exists() and not path.suffix):  # a folder, or a missing one named like the release
        for name in WEIGHT_NAMES:
            if (path / name).is_file():
                return path / name
        return path / WEIGHT_NAMES[0]
    return path


SAFETENSORS_DTYPES = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16,
                      'I64': torch.int64, 'I32': torch.int32}


def read_safetensors(path: Path) -> dict:
    """Tensors of a .safetensors file (8-byte header size, JSON header, raw little-endian data), read without the
    safetensors package."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], 'little')
    header = json.loads(data[8:8 + size])
    body = memoryview(data)[8 + size:]
    state = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        if info['dtype'] not in SAFETENSORS_DTYPES:
            raise EvarError(f'EAT: {path}: tensor {name} has unsupported dtype {info["dtype"]}.')
        start, end = info['data_offsets']
        dtype = SAFETENSORS_DTYPES[info['dtype']]
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=dtype) if end > start else torch.empty(0, dtype=dtype)
        state[name] = flat.reshape(info['shape'])
    return state


def read_weights(weight_file: Optional[str]) -> dict:
    """The raw state dict of `weight_file` (a Hugging Face folder, a .safetensors file or a torch file).

    Raises:
        EvarError: weight_file not set, a missing folder or file, or a file that cannot be read safely (a full
            fairseq checkpoint: the message says how to save its tensors).
    """
    path = weight_file_of(weight_file)
    if path is not None and path.name == WEIGHT_NAMES[0] and not path.parent.is_dir():
        raise EvarError(f'EAT: weight folder {path.parent} does not exist. Put the model.safetensors and '
                        f'config.json of the Hugging Face release there (under external/) or set weight_file; the '
                        f'publisher distributes them at {WEIGHTS_URL}.')
    if path is not None and path.suffix == '.safetensors':
        if not path.is_file():
            raise EvarError(f'EAT: {path.parent} holds neither {" nor ".join(WEIGHT_NAMES)}. Put the Hugging Face '
                            f'release there; the publisher distributes it at {WEIGHTS_URL}.')
        try:
            return read_safetensors(path)
        except EvarError:
            raise
        except Exception as e:
            raise EvarError(f'EAT: cannot read weight file {path}: {e}') from e
    try:
        return load_checkpoint(str(path) if path else None, 'EAT', WEIGHTS_URL)
    except EvarError as e:
        if 'cannot read' in str(e):  # full fairseq checkpoints pickle their config objects
            raise EvarError(f'{e} A full fairseq checkpoint cannot be read safely; save its tensors first: '
                            f'torch.save(torch.load(path, weights_only=False)["model"], "eat_state.pt").') from e
        raise


# Parts of the official checkpoints the embedding does not use: the fine-tuned classifier, and pre-training's CNN
# decoder, EMA teacher, projection heads and DINO centre (fairseq).
UNUSED_PREFIXES = ('fc_norm.', 'head.', 'decoder.', '_ema', 'ema.', 'recon_proj.', 'cls_proj.', 'shared_decoder.')
UNUSED_KEYS = ('center',)


def encoder_state(state: dict) -> dict:
    """The encoder's tensors in the Hugging Face module's names: 'model.' (Hugging Face wrapper, fairseq fine-tuning
    wrapper) dropped; fairseq's 'modality_encoders.IMAGE.' dropped and its context_encoder.norm named pre_norm."""
    out = {}
    for key, value in state.items():
        if key.startswith('model.'):
            key = key[len('model.'):]
        key = key.replace('modality_encoders.IMAGE.context_encoder.norm.', 'pre_norm.')
        key = key.replace('modality_encoders.IMAGE.', '')
        if key.startswith(UNUSED_PREFIXES) or key in UNUSED_KEYS or not isinstance(value, torch.Tensor):
            continue
        out[key] = value
    return out


def read_config(weight_file: Optional[str]) -> dict:
    """The config.json beside the weights as a dict ({} when there is none).

    Raises:
        EvarError: config.json exists but cannot be read as JSON.
    """
    path = weight_file_of(weight_file)
    config = path.parent / 'config.json' if path is not None else None
    if config is None or not config.is_file():
        return {}
    try:
        return json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise EvarError(f'EAT: cannot read {config}: {e}') from e


def shape_of(state: dict, key: str, source: str) -> tuple:
    """Shape of `state[key]`.

    Raises:
        EvarError: the key is missing, i.e. `source` is not an EAT checkpoint.
    """
    if key not in state:
        raise EvarError(f'EAT: weight file {source} has no {key}; expected an EAT checkpoint (Hugging Face keys '
                        f'model.local_encoder.*, model.blocks.*, or fairseq modality_encoders.IMAGE.*, blocks.*).')
    return tuple(state[key].shape)


class EAT(AudioRepr):
    """EAT (Chen et al., IJCAI 2024; cwx-worst-one/EAT, Hugging Face worstchan/EAT-base_epoch30_pretrain): waves [B, N]
    float32 at 16 kHz -> Frames [B, T, D] from 1024-frame (10.24 s) windows run alone, per `frames`: 'patches' 8
    tokens per 160 ms column, 'cls' one per window, 'all' 1 + 512 per window (target_length 1024, 128 mels).

    Raises:
        EvarError: window not 'hanning', frames not one of FRAME_MODES, target_length or n_mels not a multiple of
            the checkpoint's patch size, or missing / unreadable / mismatched weights (at construction).
    """
    Params = EATParams
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the normalised input in `encode`
    cache_version = 1

    def __init__(self, params: EATParams):
        super().__init__(params)
        p = params
        if p.window != 'hanning':
            raise EvarError(f'EAT: window {p.window!r} is not supported; the official front end uses hanning.')
        if p.frames not in FRAME_MODES:
            raise EvarError(f'EAT: frames must be one of {list(FRAME_MODES)}, got {p.frames!r}.')
        # The official front end: torchaudio's Kaldi fbank of the clip with its mean removed.
        self.fbank = KaldiFbank(p.sample_rate, p.n_mels, window=p.window, remove_clip_mean=True)
        self.body = self.load_encoder(p)
        patch = self.body.local_encoder.patch_size[0]
        if p.target_length % patch or p.n_mels % patch:
            raise EvarError(f'EAT: target_length ({p.target_length}) and n_mels ({p.n_mels}) must be multiples of '
                            f'the patch size {patch}.')
        self.patch, self.freq_rows = patch, p.n_mels // patch

    @property
    def frame_hop_sec(self) -> Optional[float]:
        """'patches': a column's `freq_rows` tokens share its time, so frames are patch / freq_rows fbank frames apart
        on average; 'cls': one per window; 'all' mixes CLS and patch tokens: None."""
        hop_sec = self.fbank.hop_length / self.params.sample_rate
        return {'patches': hop_sec * self.patch / self.freq_rows,
                'cls': hop_sec * self.params.target_length}.get(self.params.frames)

    @property
    def embedding_dim(self) -> int:
        """The checkpoint's width (768 for EAT-base), times the number of output_layers when they are concatenated."""
        dim, depth = self.body.extra_tokens.shape[-1], len(self.body.blocks)
        return selected_width([dim] * depth, self.params.output_layers, self.params.layer_average)

    @classmethod
    def weight_paths(cls, params) -> list:
        """The tensor file (resolved inside a folder) and, when present, the config.json beside it (it sets the
        heads and LayerNorm eps)."""
        path = weight_file_of(params.weight_file)
        if path is None:
            return []
        config = path.parent / 'config.json'
        return [path] + ([config] if config.is_file() else [])

    def load_encoder(self, p: EATParams) -> EATEncoder:
        """The encoder sized from the checkpoint's shapes, loaded strictly.

        Raises:
            EvarError: unreadable weights, a checkpoint that is not EAT's, or a positional table that does not fit
                n_mels / patch frequency rows.
        """
        source = str(p.weight_file)
        state = encoder_state(read_weights(p.weight_file))
        dim = shape_of(state, 'extra_tokens', source)[-1]
        patch = shape_of(state, 'local_encoder.proj.weight', source)[-1]
        n_positions = shape_of(state, 'fixed_positional_encoder.positions', source)[1]
        mlp_hidden = shape_of(state, 'blocks.0.mlp.fc1.weight', source)[0]
        depth = sum(1 for k in state if k.startswith('blocks.') and k.endswith('.norm1.weight'))
        freq_rows = p.n_mels // patch
        if n_positions % freq_rows:
            raise EvarError(f'EAT: the positional table ({n_positions}) does not fit {freq_rows} frequency rows '
                            f'(n_mels {p.n_mels}, patch {patch}).')
        config = read_config(p.weight_file)
        num_heads = p.num_heads or int(config.get('num_heads', dim // 64))
        if p.feature_d is not None and p.feature_d != dim:
            warnings.warn(f'EAT: feature_d {p.feature_d} in the config differs from the checkpoint\'s {dim}; using '
                          f'{dim}.', stacklevel=3)
        body = EATEncoder(dim, depth, num_heads, mlp_hidden, patch, freq_rows, n_positions // freq_rows,
                          float(config.get('norm_eps', 1e-6)))
        load_strict(body, state, source)
        return body

    def patch_embedding(self) -> nn.Module:
        """The patch embedding (a strided convolution over fbank patches)."""
        return self.body.local_encoder

    def features(self, wav, lengths):
        """Kaldi log-mel fbank [B, n_mels, T] of each clip with its mean removed (10 ms frames, unnormalised; see
        `encode`) and frame counts [B] = 1 + (n - 400) // 160 at 16 kHz (at least 1)."""
        return self.fbank(wav, lengths)

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of fbanks [B, n_mels, T] with `feat_lengths` [B] frames, windows of target_length frames
        (zero-padded, then normalised) concatenated: 'patches' [B, W * C * R, D] (C = target_length / patch
        columns, R = n_mels / patch rows, time-major; masked True for columns that start inside the clip), 'cls'
        [B, W, D], 'all' [B, W * (1 + C * R), D] (masked True for windows holding audio).

        Raises:
            EvarError: output_layers out of range, or a window longer than the positional table.
        """
        p = self.params
        b, n_mels, total = feats.shape
        width = p.target_length
        n_windows = max(1, math.ceil(total / width))
        # Official padding: zero fbank frames (past the clip's end, and up to whole windows), then normalisation.
        x = feats * lengths_to_mask(feat_lengths, total).unsqueeze(1).to(feats.dtype)
        x = nn.functional.pad(x, (0, n_windows * width - total))
        x = self.augment_input((x - p.norm_mean) / (2 * p.norm_std))
        windows = x.reshape(b, n_mels, n_windows, width).permute(0, 2, 3, 1)  # [B, W, frames, mels]
        starts = torch.arange(n_windows, device=feats.device)[None] * width
        audio_frames = (feat_lengths[:, None] - starts).clamp(0, width)  # [B, W] the clip's frames in each window
        todo = audio_frames > 0
        chosen = windows[todo].unsqueeze(1)
        outputs = []
        for start in range(0, chosen.shape[0], WINDOWS_PER_PASS):
            layers = self.body(chosen[start:start + WINDOWS_PER_PASS])
            outputs.append(select_layers(layers, p.output_layers, p.layer_average))
        y = torch.cat(outputs)  # [N, 1 + patches, D]
        columns = width // self.patch
        if p.frames == 'cls':
            y, valid = y[:, :1], todo[..., None]
        elif p.frames == 'all':
            y, valid = y, todo[..., None].expand(-1, -1, y.shape[1])
        else:  # patch tokens of columns holding some of the clip's audio, 8 (frequency rows) per column
            y = y[:, 1:]
            column_start = torch.arange(columns, device=feats.device) * self.patch
            valid = (column_start[None, None] < audio_frames[..., None]).repeat_interleave(self.freq_rows, dim=-1)
        out = y.new_zeros(b, n_windows, y.shape[1], y.shape[2])
        out[todo] = y
        return Frames(out.reshape(b, -1, y.shape[2]), valid.reshape(b, -1))
