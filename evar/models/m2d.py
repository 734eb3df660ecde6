"""M2D and MSM-MAE: the ViT audio encoders of NTT (Niizumi et al.), loading the official checkpoints strictly.

M2D, Masked Modeling Duo (ICASSP 2023; TASLP 2024), github.com/nttcslab/m2d, and MSM-MAE, Masked Spectrogram
Modeling using Masked Autoencoders (HEAR 2021, PMLR 166, 2022), github.com/nttcslab/msm-mae, share one design: a
ViT over 16x16 (or other) patches of an 80-bin log-mel spectrogram, the patch grid (F' frequency rows x T' time
columns) fixed by the training input (e.g. 80x608 frames -> 5 x 38 patches), 2-D sin-cos positional embeddings
stored in the checkpoint. Both are written here in plain torch on evar.models.vit (timm key names):

- M2D: timm ViT blocks (qkv with bias), a [CLS] token, LayerNorm eps 1e-6, and a `norm_stats` tensor (the log-mel
  mean/std the model was trained with; [-7.1, 4.2] for checkpoints that predate it, as the official loader assumes).
  Checkpoints are training containers ({'model': ...} with the online encoder under plain names beside the target
  encoder `target_*`, the predictor `decoder_*` and, for variants, CLAP/offline heads), encoder-only files, RuntimeM2D
  states (`backbone.` prefix) or EVAR fine-tuning states (`module.ar.runtime.backbone.` prefix). As the official
  portable runtime does, prefixes are removed and every key outside the encoder is dropped; then loading is strict.
- MSM-MAE: the MAE encoder whose attention has separate q and v biases and none for k (`attn.q_bias`,
  `attn.v_bias`, `attn.qkv.weight`), the [CLS] token only when the checkpoint has one; the MAE decoder
  (`decoder_*`, `mask_token`) is dropped. Normalised with the task's training-split statistics, as EVAR does (the
  HEAR runtime instead standardises each batch by its own mean/std, which makes a clip's embedding depend on its
  batch; that is not reproduced).

The configuration comes from the weight folder's name as in the official runtimes: M2D
`m2d_vit_base-80x608p16x16[p32k]-...` (input 80 x 608 frames, patch 16 x 16, sample rate 16 kHz unless `p32k`),
MSM-MAE `80x208p16x16_...`; the file's own name is tried when the folder's does not parse. The sizes are checked
against the checkpoint's tensor shapes; the embedding width and depth are read from them and the head count is
width / 64 (ViT-S/B/L) unless `num_heads` is set.

Front end (nnAudio MelSpectrogram in the official code): 16 kHz, n_fft = window 400, hop 160, 80 mels 50-8000 Hz
(32 kHz: 800/800/320, 50-16000 Hz), periodic Hann, centred reflect padding, power 2, librosa's Slaney mel scale with
Slaney area normalisation, log(x + float32 eps). Written here with evar.frontend.Spectrogram and a Slaney filterbank.

Embedding (per patch column, i.e. every patch-width frames: 160 ms for 16x16 at 16 kHz): as the official
`encode_lms`, the spectrogram is cut into windows of the training input's width (608 frames = 6.08 s), each window is
encoded, and the patch tokens are reshaped to [B, T', F', D] and stacked over frequency into the feature dimension
(F' x D = 3840 for ViT-B with 5 rows), windows concatenated in time. A width that is not a multiple of the patch
width (80x1001 with 16x16 patches: 62 columns) leaves each full window's last frames unused, as there.
`flat_features: true` averages over frequency instead (D = 768, as the official timestamp embeddings).
`output_layers` picks block outputs (-1: the final LayerNorm output; others: raw block outputs, as the runtimes'
`return_layers`), concatenated or averaged.

Padding: the official M2D runtime encodes a clip's last window with only its own patches (a shortened positional
embedding), so a single clip never sees padding; in a padded batch it would attend to the batch's padding. Here every
patch column past a clip's valid frames is masked out of attention (key mask) and out of the frames, which equals the
official single-clip result, whatever the batch (columns past the valid ones of every window in a pass are not
computed at all, so a short clip costs what it does in the official runtime). The official MSM-MAE runtime pads every
clip's last window with zeros to the full window and attends to them (its output frames are then trimmed); here those
padding patches are masked by default (`attend_padding: false`), which changes the last window's embeddings of clips
whose length is not a multiple of the window (documented numbers below); `attend_padding: true` reproduces the
official runtime (still independent of the batch, since padding is zero after normalisation in both cases).

Checked against the official code (examples/portable_m2d.py with timm 1.0.31, msm_mae/runtime.py on
facebookresearch/mae models_mae.py + the published patch; nnAudio 0.3.4 front end) with random weights saved from the
official models and loaded strictly here, on 4 real clips (ESC-50 5 s, a RAVDESS sentence, a 1 s speech command, and
a 14.5 s concatenation spanning 3 windows of 608 frames / 7 of 208) embedded as one padded batch:
    PYTHONPATH=<timm dir> python benchmarks/parity_m2d.py --m2d_repo <m2d checkout> --msm_mae_repo <msm-mae checkout>
log-mel max |diff| 7.2e-05 (16 kHz) / 9.7e-05 (32 kHz); M2D embeddings max relative diff 2.3e-06 (16 kHz,
608-frame windows), 4.2e-06 (32 kHz, 208 frames), layer 6 of 12 3.1e-06, flat_features 1.1e-06; MSM-MAE with
attend_padding true 1.4e-06 (with and without [CLS]); with the default key mask 1.4e-06 on windows without padding
and up to 0.74 relative on a clip's last, partly padded window (the official attends to its zero padding).
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import EvarError
from ..frontend import slaney_mel_filterbank
from ..frontend import Spectrogram
from .base import AudioRepr, Frames, load_checkpoint, load_strict, select_layers
from .spec import SpecParams
from .vit import Attention, Block, PatchEmbed

M2D_WEIGHTS_URL = 'https://github.com/nttcslab/m2d/releases (archives listed in the README)'
MSM_MAE_WEIGHTS_URL = 'https://github.com/nttcslab/msm-mae/releases'
LN_EPS = 1e-6
WINDOWS_PER_PASS = 32  # encoder windows run together; bounds memory for long clips

# Front end per sample-rate tag of the weight folder name, as the official runtimes set it.
FRONT_ENDS = {
    '16k': dict(sample_rate=16000, n_fft=400, window_size=400, hop_size=160, n_mels=80, f_min=50.0, f_max=8000.0),
    '32k': dict(sample_rate=32000, n_fft=800, window_size=800, hop_size=320, n_mels=80, f_min=50.0, f_max=16000.0),
}


@dataclass(frozen=True)
class M2DParams(SpecParams):
    """YAML keys of `m2d`: SpecParams' front-end keys with the 16 kHz defaults of FRONT_ENDS (n_fft = window 400,
    hop 160 samples, 80 Slaney mels, 50-8000 Hz; p32k weights need FRONT_ENDS['32k'], which is checked), and:

    Keys:
        temporal_pooling_type: 'mean' (EVAR's AR_M2D), 'max' or 'mean_max'.
        weight_file: the checkpoint, inside the publisher's folder (its name gives input, patch and rate sizes).
        norm_stats: [mean, std] of the log-mel (natural log of mel power); None: the checkpoint's norm_stats.
        output_layers: block index (-1: the last, LayerNorm'd), a list of indices, or 'all'.
        layer_average: with several output_layers, average them instead of concatenating.
        flat_features: average a column's frequency tokens (D) instead of stacking them (F' x D).
        num_heads: attention heads (None: the embedding width / 64).
    """
    sample_rate: int = 16000
    n_fft: int = 400
    window_size: int = 400
    hop_size: int = 160
    n_mels: int = 80
    f_min: float = 50.0
    f_max: float = 8000.0
    temporal_pooling_type: str = 'mean'  # EVAR's AR_M2D averages frames
    weight_file: Optional[str] = None
    norm_stats: Optional[list] = None  # [mean, std] of log-mel; None: the checkpoint's norm_stats
    output_layers: Any = -1  # block index (-1: final, LayerNorm'd), list of indices, or 'all'
    layer_average: bool = False  # average the chosen layers instead of concatenating them
    flat_features: bool = False  # average over frequency rows (D) instead of stacking them (F' x D)
    num_heads: Optional[int] = None  # None: embedding width / 64


@dataclass(frozen=True)
class MSMMAEParams(M2DParams):
    """YAML keys of `msm_mae`: M2DParams', with norm_stats None meaning statistics of the task's training split
    (MSM-MAE checkpoints carry none), and attend_padding: True attends to the zero padding of a clip's last window
    as the official runtime does (False: masked)."""
    norm_stats: Optional[list] = None  # [mean, std] of log-mel; None: computed on the task's training split
    attend_padding: bool = False  # True: attend to the zero padding of the last window as the official runtime


# ---------------------------------------------------------------------------------------------------------------
# Front end


class QVBiasAttention(Attention):
    """MSM-MAE's attention: qkv without bias, plus learned q and v biases (the k bias is fixed at zero)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__(dim, num_heads, qkv_bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B, N, D] -> [B, N, D]; key_mask [B, N], True for tokens that may be attended to."""
        b, n, d = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class PatchViT(nn.Module):
    """ViT over patches of one spectrogram window; keys as the official encoders (timm names)."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float, patch: tuple, grid: tuple,
                 cls_token: bool, qv_bias: bool, norm_stats: bool):
        super().__init__()
        self.grid = tuple(grid)  # (F', T') patch rows and columns of one window
        self.patch_embed = PatchEmbed(patch, 1, dim)
        self.has_cls = cls_token
        if cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, int(cls_token) + grid[0] * grid[1], dim), requires_grad=False)
        if norm_stats:
            self.norm_stats = nn.Parameter(torch.tensor([-7.1, 4.2]), requires_grad=False)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, eps=LN_EPS) for _ in range(depth))
        if qv_bias:
            for block in self.blocks:
                block.attn = QVBiasAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor, columns: torch.Tensor, wanted: set, keep: Optional[torch.Tensor] = None) -> dict:
        """x [M, F, W] windows (W up to the training width; a narrower input uses the first columns of the
        positional embedding, as the official runtime does for a short last window); columns [M] patch columns that
        may be attended to in each -> {layer: [M, F' * C, D]} patch tokens (row-major over F' rows and the C columns
        of x), for the layer indices in `wanted` (the last one LayerNorm'd). keep [M, F' * C] bool (fine-tuning's
        training mask): tokens False are dropped, i.e. never attended to (what removing them from the sequence
        does to the others) and zero in the output."""
        rows, cols = self.grid
        tokens = self.patch_embed(x.unsqueeze(1))
        width = tokens.shape[1] // rows
        pos = self.pos_embed[:, int(self.has_cls):].reshape(1, rows, cols, -1)[:, :, :width]
        tokens = tokens + pos.reshape(1, rows * width, -1)
        key_mask = None
        if bool((columns < width).any()):
            valid = torch.arange(width, device=x.device)[None, :] < columns[:, None]  # [M, C]
            key_mask = valid[:, None, :].expand(-1, rows, -1).reshape(len(x), rows * width)
        if keep is not None:
            key_mask = keep if key_mask is None else key_mask & keep
        if self.has_cls:
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(len(x), -1, -1)
            tokens = torch.cat([cls, tokens], dim=1)
            if key_mask is not None:
                key_mask = torch.cat([key_mask.new_ones(len(x), 1), key_mask], dim=1)
        out, last = {}, len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, key_mask)
            if i in wanted and i != last:
                out[i] = tokens[:, int(self.has_cls):]
        if last in wanted:
            out[last] = self.norm(tokens)[:, int(self.has_cls):]
        if keep is not None:
            out = {i: t * keep[..., None] for i, t in out.items()}
        return out


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint helpers


def _sizes_m2d(name: str):
    """'m2d_vit_base-80x608p16x16p32k-221006' -> ([80, 608], [16, 16], '32k'), or None."""
    parts = name.split('-')
    if len(parts) < 2:
        return None
    fields = parts[1].split('p')
    return _parse_sizes(fields[:2], fields[2] if len(fields) > 2 else '16k')


def _sizes_msm_mae(name: str):
    """'80x208p16x16_0422' -> ([80, 208], [16, 16], '16k'), or None."""
    return _parse_sizes(name.split('_')[0].split('p')[:2], '16k')


def _parse_sizes(fields: list, rate: str):
    try:
        input_size, patch = ([int(v) for v in f.split('x')] for f in fields)
    except ValueError:
        return None
    if len(fields) != 2 or len(input_size) != 2 or len(patch) != 2:
        return None
    return input_size, patch, rate


def _read_state(path: Optional[str], model_name: str, url: str) -> dict:
    # Training checkpoints also hold their argparse.Namespace; allowed for this read only (plain values inside).
    with torch.serialization.safe_globals([argparse.Namespace]):
        return load_checkpoint(path, model_name, url)


def _count_blocks(state: dict) -> int:
    indices = {int(k.split('.')[1]) for k in state if k.startswith('blocks.') and k.split('.')[1].isdigit()}
    return max(indices) + 1 if indices else 0


def _layer_indices(output_layers: Any, depth: int) -> list:
    """Block indices chosen by `output_layers`, validated by select_layers (same rules and message)."""
    return [i % depth for i in select_layers([torch.tensor([i]) for i in range(depth)], output_layers).tolist()]


# ---------------------------------------------------------------------------------------------------------------
# The audio representations


class M2D(AudioRepr):
    """M2D (Niizumi et al., ICASSP 2023 / TASLP 2024; nttcslab/m2d): waves [B, N] float32 at 16 kHz (32 kHz for p32k
    weights) -> Frames [B, T, D], one per patch column (160 ms for 16x16 patches at 16 kHz), D = F' x width per
    layer (3840 for ViT-B on 80 mels), or the width with flat_features.

    Raises:
        EvarError: a weight path whose folder or file name does not give the sizes, a config front end that is not
            the one the weights were trained on, a checkpoint without a matching ViT encoder, widths that cannot be
            split into heads, or output_layers out of range (at construction).
    """
    Params = M2DParams
    augment_point = 'spectrogram'
    needs_norm_stats = False
    cache_version = 1
    model_name = 'M2D'
    weights_url = M2D_WEIGHTS_URL

    def __init__(self, params: M2DParams):
        super().__init__(params)
        state = _read_state(params.weight_file, self.model_name, self.weights_url)
        input_size, patch, rate = self._sizes(params.weight_file)
        self._check_front_end(rate)
        state = self._encoder_state(state)
        self.encoder = self._build(state, input_size, patch)
        self._load(state)
        self.unit_frames = input_size[1]
        self.patch_frames = patch[1]
        self.layers = _layer_indices(params.output_layers, len(self.encoder.blocks))
        self.spec = Spectrogram(params.sample_rate, params.n_fft, params.window_size, params.hop_size,
                                n_mels=params.n_mels, f_min=params.f_min, f_max=params.f_max)
        self.spec.mel_fb = slaney_mel_filterbank(params.sample_rate, params.n_fft, params.n_mels, params.f_min,
                                                 params.f_max)
        self.training_mask = 0.0  # ratio of patch tokens dropped in training mode (set_training_mask)
        if params.feature_d is not None and params.feature_d != self.embedding_dim:
            warnings.warn(f'{self.model_name}: feature_d {params.feature_d} in the config differs from the model\'s '
                          f'{self.embedding_dim}; using {self.embedding_dim}.', stacklevel=2)
        self.reset_norm_stats()

    @property
    def frame_hop_sec(self) -> float:
        """Output frames are patch columns: a window of U frames gives U / (patch width) of them."""
        return self.unit_frames / self.encoder.grid[1] * self.params.hop_size / self.params.sample_rate

    @property
    def embedding_dim(self) -> int:
        """Each chosen block's column: its frequency tokens stacked (or averaged with flat_features); the blocks
        concatenated, or averaged with layer_average."""
        rows, dim = self.encoder.grid[0], self.encoder.pos_embed.shape[-1]
        per_layer = dim if self.params.flat_features else rows * dim
        return per_layer * (1 if self.params.layer_average else len(self.layers))

    # -- construction -------------------------------------------------------------------------------------------
    def _sizes(self, weight_file: str):
        path = Path(weight_file)
        for name in (path.parent.name, path.stem):
            sizes = self._parse_name(name)
            if sizes is not None:
                return sizes
        raise EvarError(f'{self.model_name}: cannot read the input and patch sizes from the weight path {path}: the '
                        f'official runtime takes them from the folder name, e.g. {self._name_example()}. Keep the '
                        f'folder name the publisher\'s archive has.')

    @staticmethod
    def _parse_name(name: str):
        return _sizes_m2d(name)

    @staticmethod
    def _name_example() -> str:
        return 'm2d_vit_base-80x608p16x16-221006-mr7/checkpoint-300.pth (80x608 input, 16x16 patches, 16 kHz)'

    def _check_front_end(self, rate: str) -> None:
        expected = FRONT_ENDS.get(rate)
        if expected is None:
            raise EvarError(f'{self.model_name}: unknown sample-rate tag p{rate} in the weight folder name; the '
                            f'official runtime knows {sorted(FRONT_ENDS)}.')
        wrong = {k: getattr(self.params, k) for k, v in expected.items() if float(getattr(self.params, k)) != float(v)}
        if wrong:
            raise EvarError(f'{self.model_name}: the weights were trained on the {rate} front end '
                            f'{expected}, but the config has {wrong}. Use the matching config (config/m2d_32k.yaml '
                            f'for p32k weights).')

    def _encoder_state(self, state: dict) -> dict:
        """The online encoder's tensors, unwrapped as the official portable runtime does."""
        if any(k.startswith('backbone.') for k in state):  # a RuntimeM2D state
            state = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
        state = {k.replace('module.ar.runtime.backbone.', ''): v for k, v in state.items()}
        if 'norm_stats' not in state:  # 2022 checkpoints predate the tensor; the official default
            state['norm_stats'] = torch.tensor([-7.1, 4.2])
        return state

    def _build(self, state: dict, input_size: list, patch: list) -> PatchViT:
        name = self.model_name
        weight = state.get('patch_embed.proj.weight')
        if weight is None or weight.dim() != 4 or 'blocks.0.mlp.fc1.weight' not in state or 'pos_embed' not in state:
            raise EvarError(f'{name}: weight file {self.params.weight_file} has no ViT encoder (patch_embed.proj.weight,'
                            f' pos_embed, blocks.*); keys seen: {sorted(state)[:8]}.')
        dim = int(weight.shape[0])
        if list(weight.shape[2:]) != list(patch):
            raise EvarError(f'{name}: the folder name says {patch[0]}x{patch[1]} patches, the checkpoint\'s '
                            f'patch_embed has {tuple(weight.shape[2:])}.')
        if input_size[0] != self.params.n_mels or input_size[0] % patch[0]:
            raise EvarError(f'{name}: input size {input_size} does not fit {self.params.n_mels} mel bins with '
                            f'{patch[0]}-bin patches.')
        grid = (input_size[0] // patch[0], input_size[1] // patch[1])
        heads = self.params.num_heads or dim // 64
        if dim % heads or (self.params.num_heads is None and dim % 64):
            raise EvarError(f'{name}: cannot split width {dim} into heads; set num_heads.')
        hidden = int(state['blocks.0.mlp.fc1.weight'].shape[0])
        cls = self._has_cls(state)
        n_tokens = int(cls) + grid[0] * grid[1]
        if int(state['pos_embed'].shape[1]) != n_tokens:
            raise EvarError(f'{name}: the folder name\'s input {input_size} with {patch} patches means {n_tokens} '
                            f'positions, the checkpoint\'s pos_embed has {int(state["pos_embed"].shape[1])}.')
        return PatchViT(dim, _count_blocks(state), heads, hidden / dim, tuple(patch), grid, cls_token=cls,
                        qv_bias=self._qv_bias(), norm_stats=self._has_norm_stats())

    def _has_cls(self, state: dict) -> bool:
        return True

    def _qv_bias(self) -> bool:
        return False

    def _has_norm_stats(self) -> bool:
        return True

    def _load(self, state: dict) -> None:
        own = set(self.encoder.state_dict())
        dropped = sorted(set(state) - own)
        try:
            load_strict(self.encoder, {k: v for k, v in state.items() if k in own}, self.params.weight_file)
        except EvarError as e:
            raise EvarError(f'{self.model_name}: {e} Keys dropped as not part of the encoder: {dropped[:6]}'
                            f'{" ..." if len(dropped) > 6 else ""}.') from None

    def fixed_norm_stats(self):
        """The config's `norm_stats`, else the checkpoint's (M2D checkpoints carry them; MSM-MAE's do not)."""
        fixed = super().fixed_norm_stats()
        if fixed is None and self._has_norm_stats():
            fixed = tuple(float(v) for v in self.encoder.norm_stats.tolist())
        return fixed

    # -- fine-tuning hooks ---------------------------------------------------------------------------------------
    def patch_embedding(self) -> nn.Module:
        """The ViT's patch embedding (a strided convolution over log-mel patches)."""
        return self.encoder.patch_embed

    def set_training_mask(self, ratio: float) -> None:
        """In training mode, drop a random `ratio` of each window's patch tokens (at least one kept) before the
        transformer, as M2D's fine-tuning does; a frame whose tokens are all dropped leaves the valid-frame mask.

        Raises:
            EvarError: ratio outside [0, 1).
        """
        if not 0.0 <= float(ratio) < 1.0:
            raise EvarError(f'{self.model_name}: training_mask must be in [0, 1) (the ratio of patch tokens dropped), '
                            f'got {ratio}.')
        self.training_mask = float(ratio)

    def _keep_tokens(self, window_cols: torch.Tensor, used: int) -> torch.Tensor:
        """[M, F' * used] bool: a uniformly random (1 - training_mask) of each window's tokens in its first
        `window_cols` [M] columns (at least one), drawn from torch's global CPU generator."""
        rows = self.encoder.grid[0]
        valid = (torch.arange(used)[None, :] < window_cols.cpu()[:, None])[:, None, :].expand(-1, rows, -1)
        valid = valid.reshape(len(window_cols), -1)
        scores = torch.rand(valid.shape).masked_fill(~valid, 2.0)  # invalid tokens rank last
        ranks = scores.argsort(1).argsort(1)
        n_keep = (valid.sum(1) * (1.0 - self.training_mask)).long().clamp(min=1)
        return (ranks < n_keep[:, None]).to(window_cols.device)

    # -- the two stages -----------------------------------------------------------------------------------------
    def features(self, wav, lengths):
        """Log-mel [B, 80, T] (natural log of Slaney mel power + float32 eps; standardised in `encode`) and frame
        counts [B] = 1 + n // hop_size."""
        return self.spec(wav, lengths)

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of log-mels [B, n_mels, T] with `feat_lengths` [B] frames, standardised, cut into windows of the
        training width (608 frames for 80x608 weights): embeddings [B, W x T', D] (T' patch columns per window),
        masked True for columns holding some of the clip's frames.

        Raises:
            EvarError: normalisation statistics not set (MSM-MAE before `set_norm_stats`).
        """
        x = self.augment_input(self.normalize(feats, feat_lengths))  # zero past each clip's end
        b, n_mels, t = x.shape
        unit, width = self.unit_frames, self.patch_frames
        rows, cols = self.encoder.grid
        n_windows = max(1, -(-t // unit))
        x = F.pad(x, (0, n_windows * unit - t)).reshape(b, n_mels, n_windows, unit).permute(0, 2, 1, 3)
        starts = torch.arange(n_windows, device=x.device) * unit
        left = (feat_lengths.to(x.device)[:, None] - starts[None]).clamp(min=0)
        valid_cols = torch.div(left + width - 1, width, rounding_mode='floor').clamp(max=cols)  # [B, W]
        run = valid_cols > 0  # windows holding some of the clip; the rest are never computed
        attend_cols = torch.where(run, torch.full_like(valid_cols, cols), valid_cols) \
            if getattr(self.params, 'attend_padding', False) else valid_cols
        windows, window_cols = x[run], attend_cols[run]
        wanted = set(self.layers)
        per_layer = {i: [] for i in wanted}
        masking = self.training and self.training_mask > 0
        kept_cols = []  # [M, cols] columns with a token left by the training mask
        for s in range(0, len(windows), WINDOWS_PER_PASS):
            part, part_cols = windows[s:s + WINDOWS_PER_PASS], window_cols[s:s + WINDOWS_PER_PASS]
            used = int(part_cols.max())  # columns past every window's valid ones are not computed at all
            keep = self._keep_tokens(part_cols, used) if masking else None
            out = self.encoder(part[..., :used * width], part_cols, wanted, keep)
            for i in wanted:
                per_layer[i].append(F.pad(self._frames_of(out[i]), (0, 0, 0, cols - used)))
            if masking:
                kept_cols.append(F.pad(keep.reshape(len(part), rows, used).any(1), (0, cols - used)))
        layers = [None] * len(self.encoder.blocks)
        for i in wanted:
            frames = torch.cat(per_layer[i])
            full = frames.new_zeros(b, n_windows, cols, frames.shape[-1])
            full[run] = frames
            layers[i] = full.reshape(b, n_windows * cols, -1)
        emb = select_layers(layers, self.params.output_layers, self.params.layer_average)
        mask = torch.arange(cols, device=x.device)[None, None, :] < valid_cols[..., None]  # [B, W, cols]
        if masking:
            kept = torch.zeros_like(mask)
            kept[run] = torch.cat(kept_cols)
            mask = mask & kept
        return Frames(emb, mask.reshape(b, -1))

    def _frames_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """[M, F'*C, D] row-major patch tokens -> [M, C, F'*D] frequency stacked (official 'b (f t) d -> b t (f d)'),
        or [M, C, D] averaged over frequency with flat_features."""
        rows = self.encoder.grid[0]
        grid = tokens.reshape(len(tokens), rows, tokens.shape[1] // rows, -1)
        if self.params.flat_features:
            return grid.mean(1)
        return grid.permute(0, 2, 1, 3).reshape(len(tokens), grid.shape[2], -1)


class MSMMAE(M2D):
    """MSM-MAE (Niizumi et al., HEAR 2021, PMLR 166; nttcslab/msm-mae): M2D's front end and framing on the MAE
    encoder (q/v attention biases, [CLS] only if the checkpoint has one), standardised with the task's
    training-split statistics unless norm_stats is set; weight folders named like 80x208p16x16_0422."""
    Params = MSMMAEParams
    needs_norm_stats = True
    model_name = 'MSM-MAE'
    weights_url = MSM_MAE_WEIGHTS_URL

    @staticmethod
    def _parse_name(name: str):
        return _sizes_msm_mae(name)

    @staticmethod
    def _name_example() -> str:
        return ('80x208p16x16_0422/checkpoint-100.pth (80x208 input, 16x16 patches); MSM-MAE weights distributed by '
                'the M2D repository (msm_mae_vit_base-80x608p16x16-...) are timm ViTs: load them with audio_repr m2d')

    def _encoder_state(self, state: dict) -> dict:
        # The MAE decoder is not part of the representation.
        return {k: v for k, v in state.items() if not k.startswith(('decoder_', 'mask_token'))}

    def _has_cls(self, state: dict) -> bool:
        return 'cls_token' in state

    def _qv_bias(self) -> bool:
        return True

    def _has_norm_stats(self) -> bool:
        return False

    def _load(self, state: dict) -> None:
        load_strict(self.encoder, state, self.params.weight_file)
