"""BEATs (Chen et al., ICML 2023, "BEATs: Audio Pre-Training with Acoustic Tokenizers"), written in plain torch.

The official checkpoints (BEATs_iter3.pt, BEATs_iter3_plus_AS2M.pt, ...) are dicts {'cfg': ..., 'model': ...}; the
architecture (layers, widths, heads, patch size, relative-position buckets, deep-norm, ...) is read from 'cfg' and
the tensors load strictly under the official names (`patch_embedding`, `layer_norm`, `post_extract_proj`,
`encoder.pos_conv.0.weight_g/_v`, `encoder.layers.N.self_attn.{q,k,v,out}_proj`, `grep_linear`, `grep_a`,
`relative_attention_bias`, `self_attn_layer_norm`, `fc1`, `fc2`, `final_layer_norm`, `encoder.layer_norm`).

Front end (official `preprocess`): Kaldi fbank of the wave scaled to 16-bit range (torchaudio.compliance.kaldi
defaults: 25 ms Povey window, 10 ms shift, frames inside the signal only, DC offset removed, pre-emphasis 0.97,
512-point FFT power, 128 Kaldi-mel bins from 20 Hz to Nyquist, log floored at float32 eps), then
(fbank - 15.41663) / (2 * 6.55582). Computed by evar.frontend.KaldiFbank (plain torch).

Encoder: 16x16 patches of the [time, 128 mel] image (tokens ordered time-major, 8 frequency tokens per 0.16 s),
LayerNorm, projection 512 -> 768, a weight-normed grouped convolution as positional embedding, then post-LN
(deep-norm) transformer layers whose attention adds a relative position bias gated by the query (gated relative
position bias, shared by all layers).

Output frames: per 0.16 s, the mean of its 8 frequency tokens of the chosen layer (default the last, which is the
official `extract_features` output). Mean pooling of these frames is the mean over all tokens, which is EVAR's
BEATs embedding exactly (for clips up to `chunk_sec`).

Padding: a clip's valid tokens are the patches made of its own frames only (floor(frames / 16) per 0.16 s row,
as when the clip is run alone; the official padding mask would keep a partly padded patch). Padded tokens are
zeroed before the positional convolution, which is then what its own zero padding at the clip's end shows a clip
run alone, and they are masked as attention keys; everything else is per token. So a batch gives each clip
exactly what it gets alone. Clips shorter than one patch (2800 samples, 0.175 s) are zero-padded to it, which is
what the official code would need to be fed.

Long audio: the official code and EVAR feed a whole clip (the relative position bias has no length limit). Clips
up to `chunk_sec` (default 30 s, which covers GTZAN's 30 s clips) are run whole; longer ones are cut into pieces
of floor(chunk_sec / 0.16) patch rows, each run alone, and their frames concatenated in time, because attention
memory grows with the square of the length (a 10 min clip is 30,000 tokens).

Checked against the official code (microsoft/unilm beats/BEATs.py + backbone.py, torch/torchaudio 2.9.1 CPU): a
BEATs_iter3-sized official model with seeded random weights (every tensor perturbed) saved as the official
container and loaded strictly here, on ESC-50 clips of 0.5, 1, 3.3, 5 and 12 s and a 41 s clip:
`/work/evar_ref/venv/bin/python benchmarks/parity_beats.py --official <unilm>/beats --audio_glob '<clips>'`.
fbank identical to torchaudio.compliance.kaldi.fbank (max abs difference 0.0); final-layer tokens within 9.9e-7
relative, clip embeddings within 1.0e-6; the 41 s clip (two pieces at chunk_sec 30) within 8.6e-7 of the official
model run on the same two pieces of wave. In a padded batch ours equals each clip alone within 4.4e-7; the
official model with its sample padding mask differs from the clip alone by 6-10% (it keeps the partly padded
patch row), and by at most 5.1e-7 when given a mask that drops that row, which confirms that masking the tokens
before the positional convolution and as attention keys is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import EvarError
from ..frontend import KaldiFbank
from .base import AudioRepr, Frames, lengths_to_mask, load_checkpoint, load_strict, select_layers, selected_width

WEIGHTS_URL = ('the OneDrive links in https://github.com/microsoft/unilm/tree/master/beats (README, '
               '"Pre-Trained and Fine-Tuned Tokenizers and Models")')

# Kaldi fbank as BEATs calls it (evar.frontend.KaldiFbank's defaults are torchaudio.compliance.kaldi.fbank's).
SAMPLE_RATE = 16000
N_MELS = 128
WAVE_SCALE = 2 ** 15  # BEATs feeds the fbank 16-bit-range samples


# ----------------------------------------------------------------------------------------------------------------
# Architecture (names follow the official module tree).

@dataclass(frozen=True)
class BEATsArch:
    """The checkpoint's 'cfg' keys that shape the network (defaults: the official BEATsConfig's)."""
    input_patch_size: int = -1
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = 'gelu'
    layer_norm_first: bool = False
    deep_norm: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_class: int = 527

    @classmethod
    def from_cfg(cls, cfg: dict, source) -> 'BEATsArch':
        """The architecture from a checkpoint's 'cfg' dict (other keys ignored; `source` names the file in errors).

        Raises:
            EvarError: input_patch_size not a positive divisor of the 128 mel bins, an unsupported activation_fn,
                or deep_norm together with layer_norm_first.
        """
        known = {f.name for f in fields(cls)}
        arch = cls(**{k: v for k, v in cfg.items() if k in known})
        if arch.input_patch_size <= 0 or N_MELS % arch.input_patch_size:
            raise EvarError(f'BEATs: checkpoint {source} has input_patch_size {arch.input_patch_size}; it must divide '
                            f'the {N_MELS} mel bins.')
        if arch.activation_fn not in ACTIVATIONS:
            raise EvarError(f'BEATs: activation_fn {arch.activation_fn!r} in {source} is not supported '
                            f'({sorted(ACTIVATIONS)}).')
        if arch.deep_norm and arch.layer_norm_first:
            raise EvarError(f'BEATs: checkpoint {source} sets both deep_norm and layer_norm_first.')
        return arch


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate='tanh')


ACTIVATIONS = {'gelu': F.gelu, 'gelu_accurate': _gelu_tanh, 'gelu_fast': _gelu_tanh, 'relu': F.relu}


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device) -> torch.Tensor:
    """T5-style bidirectional buckets [L, L] of key position - query position: half the buckets per direction,
    exact below a quarter of num_buckets, logarithmic up to max_distance, the last bucket beyond."""
    positions = torch.arange(length, device=device)
    relative = positions[None, :] - positions[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    exact = half // 2
    far = exact + (torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
                   * (half - exact)).long()
    far = far.clamp(max=half - 1)
    return buckets + torch.where(distance < exact, distance, far)


class WeightNormConv1d(nn.Module):
    """Conv1d with the weight stored as direction `weight_v` and per-tap magnitude `weight_g` (weight norm over
    every dimension but the kernel's, dim=2, as the official model wraps its positional convolution)."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.padding, self.groups = kernel // 2, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel) * 0.02)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, channels, L] -> [B, channels, L + 1 - kernel % 2] (zero padding kernel // 2 on each side)."""
        weight = self.weight_v * (self.weight_g / self.weight_v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class ConvPositionalEmbedding(nn.Sequential):
    """[B, D, L] -> [B, D, L]: the convolution (output trimmed to L for an even kernel), then GELU."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__(WeightNormConv1d(channels, kernel, groups))
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, L] tokens (channels first) -> [B, D, L] positional term, added to the tokens by the caller."""
        y = self[0](x)
        if self.trim:
            y = y[..., :-self.trim]
        return F.gelu(y)


class RelativeAttention(nn.Module):
    """BEATs' multi-head self-attention (separate q/k/v/out projections) with an additive relative position bias,
    gated per query and head by `grep_linear` / `grep_a` when the checkpoint sets gru_rel_pos; padded keys masked."""
    def __init__(self, arch: BEATsArch):
        super().__init__()
        d, heads = arch.encoder_embed_dim, arch.encoder_attention_heads
        self.num_heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))
        if arch.relative_position_embedding:
            self.relative_attention_bias = nn.Embedding(arch.num_buckets, heads)
        self.gru_rel_pos = arch.gru_rel_pos
        if arch.gru_rel_pos:
            self.grep_linear = nn.Linear(d // heads, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, position_bias: Optional[torch.Tensor]):
        """x [B, L, D]; key_mask [B, L] True for real tokens; position_bias [H, L, L] or None."""
        b, n, d = x.shape
        q, k, v = (proj(x).view(b, n, self.num_heads, -1).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))  # [B, H, L, hd]
        bias = torch.zeros(b, self.num_heads, n, n, dtype=x.dtype, device=x.device)
        if position_bias is not None:
            if self.gru_rel_pos:
                # Gate per query and head from the unscaled query: two sigmoids of sums of 4 projections.
                gate_a, gate_b = torch.sigmoid(self.grep_linear(q).view(b, self.num_heads, n, 2, 4).sum(-1)).chunk(
                    2, dim=-1)
                bias = bias + (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * position_bias
            else:
                bias = bias + position_bias
        bias = bias.masked_fill(~key_mask[:, None, None, :], float('-inf'))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale 1/sqrt(head dim), as the official
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class EncoderLayer(nn.Module):
    """One transformer layer: post-LN (residuals scaled by (2 N)^(1/4) with deep_norm, N = encoder_layers) or
    pre-LN (layer_norm_first); FFN encoder_embed_dim -> encoder_ffn_embed_dim -> encoder_embed_dim."""
    def __init__(self, arch: BEATsArch):
        super().__init__()
        d = arch.encoder_embed_dim
        self.self_attn = RelativeAttention(arch)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, arch.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(arch.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.activation = ACTIVATIONS[arch.activation_fn]
        self.layer_norm_first = arch.layer_norm_first
        # Deep-norm scales the residual branch by (2 N)^(1/4) in post-LN layers.
        self.residual_scale = math.pow(2 * arch.encoder_layers, 0.25) if arch.deep_norm else 1.0

    def forward(self, x, key_mask, position_bias):
        """x [B, L, D] -> [B, L, D]; key_mask [B, L] and position_bias [H, L, L] (or None) as in RelativeAttention."""
        if self.layer_norm_first:
            x = x + self.self_attn(self.self_attn_layer_norm(x), key_mask, position_bias)
            return x + self.fc2(self.activation(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x * self.residual_scale + self.self_attn(x, key_mask, position_bias))
        return self.final_layer_norm(x * self.residual_scale + self.fc2(self.activation(self.fc1(x))))


class TransformerEncoder(nn.Module):
    """BEATs' encoder: convolutional positional embedding, LayerNorm (post-LN models) and `encoder_layers` layers
    sharing one relative-position bias table."""
    def __init__(self, arch: BEATsArch):
        super().__init__()
        self.arch = arch
        d = arch.encoder_embed_dim
        self.pos_conv = ConvPositionalEmbedding(d, arch.conv_pos, arch.conv_pos_groups)
        self.layers = nn.ModuleList(EncoderLayer(arch) for _ in range(arch.encoder_layers))
        if arch.relative_position_embedding:
            # One bias table shared by every layer (the official model ties them, and its file repeats the
            # tensor under each layer's name).
            shared = self.layers[0].self_attn.relative_attention_bias
            for layer in self.layers[1:]:
                layer.self_attn.relative_attention_bias = shared
        self.layer_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> list:
        """x [B, L, D] tokens, key_mask [B, L] -> every layer's output [B, L, D]."""
        x = x * key_mask.unsqueeze(-1)  # padded tokens are zeros, as a lone clip's conv padding
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.arch.layer_norm_first:
            x = self.layer_norm(x)
        position_bias = None
        if self.arch.relative_position_embedding:
            buckets = relative_position_buckets(x.shape[1], self.arch.num_buckets, self.arch.max_distance, x.device)
            table = self.layers[0].self_attn.relative_attention_bias
            position_bias = table(buckets).permute(2, 0, 1)  # [H, L, L]
        outputs = []
        for layer in self.layers:
            x = layer(x, key_mask, position_bias)
            outputs.append(x)
        if self.arch.layer_norm_first:
            outputs[-1] = self.layer_norm(outputs[-1])  # the official final output of a pre-LN encoder
        return outputs


class BEATsModel(nn.Module):
    """The official BEATs module tree: patch embedding, its LayerNorm, projection, encoder (and the fine-tuned
    models' AudioSet predictor, loaded but not used for embeddings)."""

    def __init__(self, arch: BEATsArch):
        super().__init__()
        self.arch = arch
        p = arch.input_patch_size
        self.patch_embedding = nn.Conv2d(1, arch.embed_dim, kernel_size=p, stride=p, bias=arch.conv_bias)
        self.layer_norm = nn.LayerNorm(arch.embed_dim)
        if arch.embed_dim != arch.encoder_embed_dim:
            self.post_extract_proj = nn.Linear(arch.embed_dim, arch.encoder_embed_dim)
        self.encoder = TransformerEncoder(arch)
        if arch.finetuned_model:
            self.predictor = nn.Linear(arch.encoder_embed_dim, arch.predictor_class)

    def tokens(self, fbank: torch.Tensor) -> torch.Tensor:
        """fbank [B, T, 128] -> tokens [B, T // p, 128 // p, D] (time rows of frequency tokens)."""
        x = self.patch_embedding(fbank.unsqueeze(1))  # [B, E, T', F']
        x = self.layer_norm(x.permute(0, 2, 3, 1))
        if hasattr(self, 'post_extract_proj'):
            x = self.post_extract_proj(x)
        return x


# ----------------------------------------------------------------------------------------------------------------
# The AR.

@dataclass(frozen=True)
class BEATsParams:
    """YAML keys of `beats`. The network's sizes come from the checkpoint's 'cfg', not from here.

    Keys:
        weight_file: an official checkpoint {'cfg': ..., 'model': ...} (BEATs_iter3.pt, ...; see WEIGHTS_URL).
        feature_d: not used (EVAR configs carry it).
        sample_rate: Hz; must be 16000 (the fbank front end is fixed).
        temporal_pooling_type: 'mean' (EVAR's: the mean over all tokens), 'max' or 'mean_max'.
        output_layers: encoder layer index (-1: the last, the official output), a list of indices, or 'all'.
        layer_average: with several output_layers, average them instead of concatenating.
        fbank_mean, fbank_std: the fixed fbank statistics, in log mel energy of 16-bit-range samples; features are
            (fbank - mean) / (2 std) as the official code computes them.
        chunk_sec: seconds; longer clips are cut into pieces of floor(chunk_sec / 0.16) token rows run alone (None:
            never cut).
        attention_mib: MiB bound of one forward pass's attention-bias tensor (groups clips; outputs do not depend
            on it).
    """
    weight_file: Optional[str] = None
    feature_d: int = 768  # informational (EVAR configs carry it); the width comes from the checkpoint's cfg
    sample_rate: int = SAMPLE_RATE
    temporal_pooling_type: str = 'mean'  # EVAR: mean over all tokens
    output_layers: Any = -1  # index into the encoder layers (-1: the last, the official output), list or 'all'
    layer_average: bool = False
    fbank_mean: float = 15.41663  # BEATs' fixed fbank statistics (the std is doubled as the official code does)
    fbank_std: float = 6.55582
    chunk_sec: Optional[float] = 30.0  # clips longer than this are cut into pieces run alone; None: never cut
    attention_mib: int = 1024  # memory bound of one attention-bias tensor per forward pass (outputs don't depend on it)


def read_official_checkpoint(path: Optional[str]) -> tuple:
    """(cfg, state dict) of an official BEATs file {'cfg': ..., 'model': ...}."""
    if not path or not Path(path).expanduser().is_file():
        load_checkpoint(path, 'BEATs', WEIGHTS_URL)  # raises the standard message naming external/ and the URL
    path = Path(path).expanduser()
    try:
        container = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise EvarError(f'BEATs: cannot read weight file {path}: {e}') from e
    if not (isinstance(container, dict) and isinstance(container.get('cfg'), dict)
            and isinstance(container.get('model'), dict)):
        raise EvarError(f'BEATs: weight file {path} is not an official BEATs checkpoint (a dict with \'cfg\' and '
                        f'\'model\'); get it from {WEIGHTS_URL}.')
    return container['cfg'], container['model']


class BEATs(AudioRepr):
    """BEATs (Chen et al., ICML 2023; microsoft/unilm beats): waves [B, N] float32 at 16 kHz -> Frames [B, T, D],
    one per 0.16 s row of patch tokens (the mean of its 128 / patch frequency tokens), D = encoder_embed_dim per
    output layer.

    Raises:
        EvarError: sample_rate not 16000, a missing or non-official weight file, an unsupported 'cfg', or tensors
            that do not match it (at construction).
    """
    Params = BEATsParams
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the normalised input in `encode`

    def __init__(self, params: BEATsParams):
        super().__init__(params)
        if params.sample_rate != SAMPLE_RATE:
            raise EvarError(f'BEATs: sample_rate must be {SAMPLE_RATE} (the fbank front end is fixed), '
                            f'got {params.sample_rate}.')
        cfg, state = read_official_checkpoint(params.weight_file)
        self.arch = BEATsArch.from_cfg(cfg, params.weight_file)
        self.model = BEATsModel(self.arch).eval()
        load_strict(self.model, state, params.weight_file)
        self.patch = self.arch.input_patch_size
        self.fbank = KaldiFbank(SAMPLE_RATE, N_MELS, min_frames=self.patch)  # short clips padded to one patch row
        hop = self.fbank.hop_length
        self.chunk_rows = None
        if params.chunk_sec:
            self.chunk_rows = max(1, int(round(params.chunk_sec * SAMPLE_RATE)) // hop // self.patch)

    @property
    def frame_hop_sec(self) -> float:
        """One frame per row of frequency tokens: `patch` fbank frames (0.16 s)."""
        return self.patch * self.fbank.hop_length / SAMPLE_RATE

    @property
    def embedding_dim(self) -> int:
        """The checkpoint's encoder_embed_dim, times the number of output_layers when they are concatenated."""
        a = self.arch
        return selected_width([a.encoder_embed_dim] * a.encoder_layers, self.params.output_layers,
                              self.params.layer_average)

    def patch_embedding(self) -> nn.Module:
        """The patch embedding (a strided convolution over fbank patches)."""
        return self.model.patch_embedding

    def features(self, wav: torch.Tensor, lengths: torch.Tensor):
        """Normalised fbank [B, 128, T] and frames per clip."""
        fbank, frames = self.fbank(wav * WAVE_SCALE, lengths)
        return (fbank - self.params.fbank_mean) / (2 * self.params.fbank_std), frames

    def _pieces(self, rows: torch.Tensor) -> list:
        """(clip, first row, row count) of each piece the encoder runs alone."""
        pieces = []
        for i, n in enumerate(rows.tolist()):
            step = self.chunk_rows or n
            pieces += [(i, start, min(step, n - start)) for start in range(0, n, step)]
        return pieces

    def _groups(self, pieces: list) -> list:
        """Pieces in forward passes: similar lengths together, each pass's attention bias within attention_mib."""
        order = sorted(range(len(pieces)), key=lambda j: -pieces[j][2])
        budget = self.params.attention_mib * 2 ** 20 / (4 * self.arch.encoder_attention_heads)
        freq = N_MELS // self.patch
        groups, current = [], []
        for j in order:
            longest = pieces[current[0]][2] if current else pieces[j][2]
            if current and (len(current) + 1) * (longest * freq) ** 2 > budget:
                groups.append(current)
                current = []
            current.append(j)
        return groups + [current] if current else groups

    def encode(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> Frames:
        """Frames of normalised fbanks [B, 128, T] with `feat_lengths` [B] frames: embeddings [B, R, D], R = the
        most whole patch rows (T // patch) of any clip, each clip's rows run alone or in pieces of chunk_sec, zero
        and masked False past its rows.

        Raises:
            EvarError: output_layers out of range.
        """
        p = self.params
        tokens = self.model.tokens(self.augment_input(feats).transpose(1, 2))  # [B, R, F', D]; a row needs `patch` own frames
        rows = torch.div(feat_lengths, self.patch, rounding_mode='floor').clamp(max=tokens.shape[1])
        pieces = self._pieces(rows)
        freq, d = tokens.shape[2], tokens.shape[3]
        outputs = [None] * len(pieces)
        for group in self._groups(pieces):
            longest = max(pieces[j][2] for j in group)
            x = tokens.new_zeros(len(group), longest, freq, d)
            for g, j in enumerate(group):
                clip, start, count = pieces[j]
                x[g, :count] = tokens[clip, start:start + count]
            piece_rows = torch.tensor([pieces[j][2] for j in group], device=x.device)
            key_mask = lengths_to_mask(piece_rows, longest).repeat_interleave(freq, dim=1)
            layers = self.model.encoder(x.reshape(len(group), longest * freq, d), key_mask)
            chosen = select_layers(layers, p.output_layers, p.layer_average)
            per_row = chosen.view(len(group), longest, freq, -1).mean(2)  # mean of a row's frequency tokens
            for g, j in enumerate(group):
                outputs[j] = per_row[g, :pieces[j][2]]
        width = outputs[0].shape[-1]
        frames = tokens.new_zeros(len(rows), int(rows.max()), width)
        for (clip, start, count), out in zip(pieces, outputs):
            frames[clip, start:start + count] = out
        return Frames(frames, lengths_to_mask(rows, frames.shape[1]))
