"""CED (Dinkel et al., ICASSP 2024, "CED: Consistent ensemble distillation for audio tagging"), and the audio ViT
it shares with Dasheng (evar/models/dasheng.py subclasses `AudioViTRepr` from here).

Both families (github.com/RicherMans/CED, github.com/XiaoMi/dasheng) are the same network around different patch
shapes: a 64-bin log-mel front end (16 kHz, n_fft = window 512, hop 160, HTK mel 0-8000 Hz without filter
normalisation, power 2, then 10 log10(max(x, 1e-10)) floored at the clip's maximum - 120 dB, i.e. torchaudio's
MelSpectrogram + AmplitudeToDB(top_db=120)), an "init BN" (BatchNorm over the mel bins, running statistics), Conv2d
patches, separate learned time and frequency positional embeddings added on the [D, F', T'] patch grid, pre-norm
ViT blocks (LayerNorm eps 1e-6, qkv bias, exact GELU) and a final LayerNorm. State-dict keys are the official ones
(`init_bn.1.*`, `patch_embed.proj.*`, `time_pos_embed`, `freq_pos_embed`, `blocks.N.*`, `norm.*`) so the published
checkpoints load strictly; their front-end buffers (`front_end.0.*`) are compared with ours and then dropped, and
CED's AudioSet classifier head (`outputlayer.*`) is not part of the representation. `output_layers` indexes the
blocks (-1: the last one after the final LayerNorm, the official output). The Hugging Face exports (mispeech/*,
remote code, other key names) are not read; use the Zenodo .pt files.

CED: 16x16 patches (4 frequency rows x 63 time columns per 1012-frame window), frames are the 4 frequency patches
of each 160 ms column averaged (768-d for ced_base), so mean pooling gives the mean over all patch tokens that
EVAR's CED wrapper uses. EVAR's wrapper (88ba772, through the hub export mispeech/ced-*, code from
github.com/jimbozhang/hf_transformers_custom_model_ced) averages every token the hub model returns, and for a clip
longer than one window those include the tokens of the zero padding that fills its last window: padding entering
the pooling, which evar does not copy (benchmarks/parity_evar.py: 3.8e-7 up to 10.12 s, 0.46 relative on a 20.5 s
clip, whose last window is 61 columns of padding out of 63; EVAR's tokens of the columns holding audio average to
evar's embedding within 1.1e-7). Long audio is cut as the official CED inference cuts it: into 1012-frame (10.12 s)
windows, the last one zero-padded (after the init BN) to a full window and attended to whole; a clip of at most one
window is run unpadded. Columns of a window that hold only padding are dropped. (The official code also drops the
last window when the clip is an exact multiple of 1012 frames; that slip is not copied.)

Padding never leaks: each clip's spectrogram is computed on its own samples (reflect padding at its own end), the
top-dB floor uses that clip's own maximum, everything past its last frame is zero after the init BN (what a lone
clip's zero-padded window sees), and attention keys past a clip's end are masked where the lone clip is run unpadded.

Checked against the official code (RicherMans/CED at 60a0f54, torch 2.9.1 + torchaudio 2.9.1, random seeded
ced_base weights loaded strictly, 6 real clips of 0.5-25.8 s incl. 3 longer than one window, ours as one padded
batch): mel dB max abs diff 1.5e-05 dB, frame embeddings max relative diff 3.9e-07 (every window, padded last
windows included), the official AudioSet head on our mean-pooled frames vs the official forward (clips of one
window) 1.8e-07 abs. Re-check with `PYTHONPATH=<folder with loguru> /work/evar_ref/venv/bin/python
benchmarks/parity_ced.py --ced_repo <CED checkout>` (its docstring has the set-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from ..errors import EvarError
from ..frontend import Spectrogram, mel_filterbank
from .base import AudioRepr, Frames, lengths_to_mask, load_checkpoint, load_strict, select_layers, selected_width
from .vit import Block, PatchEmbed

CED_WEIGHTS_URL = ('https://zenodo.org/record/8275347 (audiotransformer_{tiny,mini,small,base}_mAP_*.pt, as the '
                   'CED README links them; the same files are in record 8275319)')
AMIN = 1e-10  # torchaudio AmplitudeToDB's floor before the log


class MelDB(nn.Module):
    """Power mel spectrogram in dB with a per-clip top-dB floor: [B, N] waves with lengths -> [B, n_mels, T] and
    frame counts (1 + L // hop). Equals torchaudio MelSpectrogram(center, reflect, periodic Hann, HTK mel, no filter
    norm) + AmplitudeToDB(top_db) run on each clip alone; torchaudio's own batched AmplitudeToDB takes one maximum
    over the whole batch, which would let one clip's loudness change another's floor."""

    def __init__(self, sample_rate: int, n_fft: int, win_length: int, hop_length: int, n_mels: int, f_min: float,
                 f_max: float, top_db: Optional[float]):
        super().__init__()
        self.spec = Spectrogram(sample_rate, n_fft, win_length, hop_length, n_mels=0, power=2.0, log=False)
        # torchaudio's float32 filters exactly: the float64 ones move quiet bands by ~2e-4 dB.
        self.register_buffer('mel_fb', mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, dtype=torch.float32),
                             persistent=False)
        self.top_db = top_db

    def forward(self, wav: torch.Tensor, lengths: torch.Tensor):
        """(db, frames) of waves [B, N] at `sample_rate` Hz with `lengths` [B] samples: db [B, n_mels, T] in dB
        (10 log10 of mel power, floored at 1e-10 power and at the clip's peak - top_db), zero past each clip's
        frames; frames [B] int64 = 1 + length // hop_length."""
        power, frames = self.spec(wav, lengths)  # [B, bins, T], zero past each clip's frames
        power = torch.matmul(power.transpose(1, 2), self.mel_fb).transpose(1, 2)
        db = 10.0 * torch.log10(power.clamp(min=AMIN))
        valid = lengths_to_mask(frames, db.shape[-1]).unsqueeze(1)
        if self.top_db is not None:
            peak = db.masked_fill(~valid, -math.inf).amax(dim=(1, 2), keepdim=True)
            db = torch.maximum(db, peak - self.top_db)
        return db * valid, frames

    def check_buffers(self, state: dict, source: str) -> None:
        """Compares the checkpoint's torchaudio front-end buffers (if saved) with ours, then removes them."""
        theirs = {'front_end.0.spectrogram.window': self.spec.window, 'front_end.0.mel_scale.fb': self.mel_fb}
        for key, ours in theirs.items():
            if key not in state:
                continue
            saved = state[key].to(ours.dtype)
            if saved.shape != ours.shape or not torch.allclose(saved, ours.cpu(), atol=1e-5):
                raise EvarError(f'{source}: its front end ({key}, shape {tuple(saved.shape)}) differs from this '
                                f'config\'s ({tuple(ours.shape)}): check n_fft, window_size, n_mels, f_min, f_max.')
        for key in [k for k in state if k.startswith('front_end.')]:
            del state[key]


class AudioViT(nn.Module):
    """Init BN + patch embedding + positional embeddings + blocks + final norm, official parameter names."""

    def __init__(self, n_mels: int, target_frames: int, patch: tuple, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float):
        super().__init__()
        # Index 1 as in the official nn.Sequential(Rearrange, BatchNorm2d, Rearrange): checkpoint keys init_bn.1.*.
        self.init_bn = nn.Sequential(nn.Identity(), nn.BatchNorm2d(n_mels, momentum=0.01), nn.Identity())
        self.patch_embed = PatchEmbed(patch, 1, embed_dim)
        self.grid = self.patch_embed.grid(n_mels, target_frames)
        self.time_pos_embed = nn.Parameter(torch.randn(1, embed_dim, 1, self.grid[1]) * 0.02)
        self.freq_pos_embed = nn.Parameter(torch.randn(1, embed_dim, self.grid[0], 1) * 0.02)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, eps=1e-6)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def normalize(self, db: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, T] dB -> init-BN'd, as the official [B, 1, F, T] -> [B, F, 1, T] BatchNorm2d."""
        return self.init_bn(db.unsqueeze(2)).squeeze(2)

    def forward(self, windows: torch.Tensor, key_mask: Optional[torch.Tensor], keep: Optional[set] = None) -> list:
        """windows [N, F, target_frames] (normalised) -> each block's output [N, F' * T', D] in (freq, time)
        row-major token order (None for blocks not in `keep`, when given); the last entry is after the final
        LayerNorm (the official output)."""
        x = self.patch_embed.proj(windows.unsqueeze(1))
        x = x + self.time_pos_embed[..., :x.shape[-1]] + self.freq_pos_embed
        x = x.flatten(2).transpose(1, 2)
        layers = []
        for i, block in enumerate(self.blocks):
            x = block(x, key_mask)
            layers.append(x if keep is None or i in keep else None)
        layers[-1] = self.norm(x)
        return layers


@dataclass(frozen=True)
class AudioViTParams:
    """YAML keys of `ced` and `dasheng` (the defaults are the published models' front end and the base encoder).

    Keys:
        weight_file: the official checkpoint (.pt from Zenodo; see CED_WEIGHTS_URL / DASHENG_WEIGHTS_URL).
        sample_rate: Hz of the input waves (16000, the rate the models were trained at).
        n_fft, window_size, hop_size: FFT size, Hann window and hop in samples (512, 512, 160: 32 ms / 10 ms).
        n_mels: mel bins (64, the patch grid's height); f_min, f_max: Hz, the HTK mel filters' range.
        top_db: dB below each clip's own peak where its spectrogram is floored (None: no floor).
        embed_dim, depth, num_heads, mlp_ratio: the encoder's width, blocks, heads and MLP ratio; they must be the
            checkpoint's (the strict load checks all but num_heads).
        output_layers: block index (-1: the last, after the final LayerNorm), a list of indices, or 'all'.
        layer_average: with several output_layers, average them instead of concatenating.
        temporal_pooling_type: 'mean' (EVAR's CED wrapper), 'mean_sigmoid' (EVAR's Dasheng wrapper: the hub model's
            `logits`, the sigmoid of the mean), 'max' or 'mean_max'.
        feature_d: not used (EVAR configs carry it).
    """
    weight_file: Optional[str] = None
    sample_rate: int = 16000
    n_fft: int = 512
    window_size: int = 512
    hop_size: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0
    top_db: Optional[float] = 120.0
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    output_layers: Any = -1  # block index (-1: last block after the final LayerNorm), a list, or 'all'
    layer_average: bool = False  # several output_layers: average instead of concatenate
    temporal_pooling_type: str = 'mean'  # EVAR's CED wrapper mean-pools (its Dasheng wrapper: 'mean_sigmoid')
    feature_d: Optional[int] = None  # informational (EVAR configs carry it)


class AudioViTRepr(AudioRepr):
    """The AR around `AudioViT`: front end, windowing of long audio, masks. Subclasses set the family constants
    and how a window that is only partly audio is attended to (`window_counts`)."""
    Params = AudioViTParams
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the normalised input in `encode`
    PATCH: ClassVar[tuple]  # (freq, time) patch size = stride
    TARGET_FRAMES: ClassVar[int]  # spectrogram frames per window (the positional embedding's length)
    FAMILY: ClassVar[str]
    WEIGHTS_URL: ClassVar[str]
    DROP_PREFIXES: ClassVar[tuple] = ()  # checkpoint entries that are not part of the representation
    WINDOW_BATCH: ClassVar[int] = 32  # windows per pass through the blocks

    def __init__(self, params: AudioViTParams):
        super().__init__(params)
        p = params
        # The file first: a missing one stops before a network of up to 1.2B parameters is allocated.
        state = dict(load_checkpoint(p.weight_file, self.FAMILY, self.WEIGHTS_URL))
        self.front = MelDB(p.sample_rate, p.n_fft, p.window_size, p.hop_size, p.n_mels, p.f_min, p.f_max, p.top_db)
        state = self.encoder_state(state, p.weight_file)
        self.body = AudioViT(p.n_mels, self.TARGET_FRAMES, self.PATCH, p.embed_dim, p.depth, p.num_heads,
                             p.mlp_ratio)
        load_strict(self.body, state, p.weight_file)

    @property
    def frame_hop_sec(self) -> float:
        """One frame per patch column (the frequency patches of a column averaged)."""
        return self.PATCH[1] * self.params.hop_size / self.params.sample_rate

    @property
    def embedding_dim(self) -> int:
        """embed_dim, times the number of output_layers when they are concatenated."""
        p = self.params
        return selected_width([p.embed_dim] * p.depth, p.output_layers, p.layer_average)

    def patch_embedding(self) -> nn.Module:
        """The ViT's patch embedding (a strided convolution over log-mel patches)."""
        return self.body.patch_embed

    def encoder_state(self, state: dict, path: Optional[str]) -> dict:
        """The checkpoint's front-end buffers checked against ours, then only the encoder's tensors."""
        self.front.check_buffers(state, str(path))
        return {k: v for k, v in state.items() if not k.startswith(self.DROP_PREFIXES)}

    def features(self, wav, lengths):
        """Mel power in dB [B, n_mels, T] with each clip's own top-dB floor, and frame counts 1 + n // hop."""
        return self.front(wav, lengths)

    def kept_layers(self) -> Optional[set]:
        """Block indices `output_layers` needs (None: all), so the other blocks' outputs are not held."""
        chosen, depth = self.params.output_layers, len(self.body.blocks)
        chosen = chosen if isinstance(chosen, (list, tuple)) else [chosen]
        if any(not isinstance(i, int) or not -depth <= i < depth for i in chosen):
            return None  # 'all', or an index select_layers will report as out of range
        return {i % depth for i in chosen}

    def window_counts(self, frames: torch.Tensor, n_windows: int) -> tuple:
        """Per clip and window, ([B, W] output patch columns that hold audio, [B, W] key columns attended to)."""
        raise NotImplementedError

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of dB spectrograms [B, n_mels, T] with `feat_lengths` [B] frames: embeddings [B, T', D], one per
        patch column (`frame_hop_sec` apart; the columns of consecutive TARGET_FRAMES windows concatenated, then
        cut after the last column any clip reaches), zero and masked False past each clip's audio.

        Raises:
            EvarError: output_layers out of range.
        """
        x = self.augment_input(self.body.normalize(feats))
        width = self.TARGET_FRAMES
        n_windows = max(1, math.ceil(x.shape[-1] / width))
        # Zero past each clip's end (the official pads its last window with zeros after the BN), and to whole windows.
        x = x * lengths_to_mask(feat_lengths, x.shape[-1]).unsqueeze(1)
        x = nn.functional.pad(x, (0, n_windows * width - x.shape[-1]))
        b, f = x.shape[:2]
        windows = x.reshape(b, f, n_windows, width).permute(0, 2, 1, 3)  # [B, W, F, width]
        out_cols, key_cols = self.window_counts(feat_lengths, n_windows)
        todo = out_cols > 0  # run only windows that hold some of a clip's audio
        grid_f, grid_t = self.body.grid
        key_valid = torch.arange(grid_t, device=x.device)[None] < key_cols[todo][:, None]  # [N, T']
        key_mask = None if bool(key_valid.all()) else key_valid.repeat(1, grid_f)  # (freq, time) token order
        windows, keep, parts = windows[todo], self.kept_layers(), []
        for start in range(0, windows.shape[0], self.WINDOW_BATCH):  # bounds the memory of very long clips
            part = slice(start, start + self.WINDOW_BATCH)
            layers = self.body(windows[part], None if key_mask is None else key_mask[part], keep)
            parts.append(select_layers(layers, self.params.output_layers, self.params.layer_average))
        y = torch.cat(parts)
        y = y.reshape(y.shape[0], grid_f, grid_t, y.shape[-1]).mean(1)  # frequency patches of a column averaged
        out = y.new_zeros(b, n_windows, grid_t, y.shape[-1])
        out[todo] = y
        mask = torch.arange(grid_t, device=x.device)[None, None] < out_cols[..., None]  # [B, W, T']
        out = (out * mask.unsqueeze(-1)).reshape(b, n_windows * grid_t, -1)
        mask = mask.reshape(b, n_windows * grid_t)
        used = int(mask.any(0).nonzero().max()) + 1  # drop the columns no clip reaches
        return Frames(out[:, :used], mask[:, :used])


class CED(AudioViTRepr):
    """CED (Dinkel et al., ICASSP 2024; RicherMans/CED): 16 x 16 patches, frames = the 4 frequency patches of a
    160 ms column averaged, windows of 1012 spectrogram frames (10.12 s); the YAML keys are `AudioViTParams`'.
    Frames [B, T, embed_dim]; the checkpoint's AudioSet head (`outputlayer.*`) is dropped."""
    PATCH = (16, 16)
    TARGET_FRAMES = 1012
    FAMILY = 'CED'
    WEIGHTS_URL = CED_WEIGHTS_URL
    DROP_PREFIXES = ('outputlayer.',)  # the AudioSet classifier head

    def window_counts(self, frames, n_windows):
        """Columns per clip and window ([B, W] each): a clip of at most one window runs unpadded (its whole
        16-frame columns, at least one, both output and keys); a longer one attends to all columns of every window
        holding some of its audio (the official zero-padded windows) and outputs the columns holding some audio."""
        width, pt = self.TARGET_FRAMES, self.PATCH[1]
        grid_t = self.body.grid[1]
        starts = torch.arange(n_windows, device=frames.device)[None] * width
        in_window = (frames[:, None] - starts).clamp(0, width)  # audio frames of each clip in each window
        # A clip of at most one window runs unpadded: its whole patches only (at least one: a shorter clip is
        # zero-padded to one patch), padding masked out of attention.
        single = torch.where(starts == 0, (in_window // pt).clamp(min=1), torch.zeros_like(in_window))
        # A longer clip: every window is zero-padded to full length and attended to whole, as the official does;
        # the output keeps the columns holding some audio.
        multi = torch.minimum(torch.div(in_window + pt - 1, pt, rounding_mode='floor'),
                              torch.full_like(in_window, grid_t))
        long = (frames > width)[:, None]
        out_cols = torch.where(long, multi, single)
        key_cols = torch.where(long, torch.where(in_window > 0, grid_t, 0), single)
        return out_cols, key_cols
