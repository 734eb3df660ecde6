"""PANNs CNN14 (Kong et al., IEEE/ACM TASLP 2020), the 16 kHz AudioSet tagger `Cnn14_16k_mAP=0.438.pth`.

Architecture (state-dict keys and shapes as in the official checkpoint, loaded strictly, front end included):
  front end  `spectrogram_extractor.stft.conv_{real,imag}.weight` [257, 1, 512]: the Hann-windowed DFT as two
             Conv1d kernels (stride = hop 160), applied to the clip reflect-padded by 256 samples each side; power
             = real^2 + imag^2; `logmel_extractor.melW` [257, 64]: Slaney-style mel filters (50-8000 Hz, area
             normalised, as librosa builds them); log-mel = 10 log10(max(mel, 1e-10)) (ref 1, no top_db).
             A clip of n samples has 1 + n // 160 frames. The tensors are read from the checkpoint; a fresh model
             (tests) builds the same ones here in plain torch.
  network    `bn0` (BatchNorm over the 64 mel bins), then six `conv_block{k}` of [3x3 conv (no bias) -> BN ->
             ReLU] x 2 followed by 2x2 average pooling (blocks 1-5; block 6 none), channels 64 ... 2048 (read
             from the checkpoint's shapes); mean over the remaining frequency bins; clip = max over time + mean
             over time; `fc1` + ReLU is the official 2048-d `embedding`; `fc_audioset` (527 classes) is kept for
             strict loading and `clip_logits`.
Embeddings (`output_layers`): -1 / 1 = `fc1` embedding, one frame per clip, as EVAR's AR_Cnn14 and the official
`embedding` output (use temporal pooling `mean` so a single frame is not doubled); 0 = conv block 6 frames
(2048-d, one per 32 spectrogram frames = 0.32 s), pooled like any frame output.

Padding never changes a clip's output: the time frames past each clip's end are zeroed before every convolution
(what the convolution's own zero padding sees when the clip runs alone) and again after each pooling (an odd count
of valid frames mixes the last one with padding), and the clip's time max and mean use valid frames only. The front
end runs clip by clip when lengths differ, so the reflect padding at a clip's end is its own. Clips shorter than
4960 samples (0.31 s; five 2x poolings need 32 frames) are extended with digital silence to that length; the
official model fails on them. Long clips are run whole, as the official inference does (no chunking).

Checked against the official code (qiuqiangkong/audioset_tagging_cnn `Cnn14_16k` with torchlibrosa 0.1.0, random
init seeded, its state dict loaded strictly here) on real ESC-50 / RAVDESS clips of 0.4-12 s:
log-mel, conv block 6 frames and embedding identical (max diff 0.0); front-end tensors built here for a fresh
model vs torchlibrosa's within 1.5e-08 (DFT kernels) and 1.9e-09 (mel matrix); our padded batch vs single clips
5.5e-07 relative. Re-check with
`PYTHONPATH=<torchlibrosa site> python benchmarks/parity_panns.py --panns_repo <checkout>`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import EvarError
from ..frontend import slaney_mel_filterbank
from .base import AudioRepr, Frames, lengths_to_mask, load_checkpoint, load_strict

WEIGHTS_URL = 'https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth'
CHANNELS = (64, 128, 256, 512, 1024, 2048)
POOLED_BLOCKS = 5  # blocks 1-5 halve time and frequency
TIME_STRIDE = 2 ** POOLED_BLOCKS


@dataclass(frozen=True)
class CNN14Params:
    """YAML keys of `cnn14` (defaults: the 16 kHz checkpoint's front end).

    Keys:
        weight_file: Cnn14_16k_mAP=0.438.pth (see WEIGHTS_URL).
        sample_rate: Hz of the input waves (16000).
        n_fft, window_size, hop_size: DFT size, periodic Hann window and hop in samples (512, 512, 160: 10 ms).
        n_mels: Slaney mel bins (64); f_min, f_max: Hz, the mel filters' range (50-8000). The checkpoint's stored
            front-end tensors must have these sizes (strict load).
        output_layers: -1 / 1 the fc1 clip embedding (one frame per clip), 0 conv block 6 frames (every 0.32 s).
        temporal_pooling_type: 'mean' (a single clip frame stays as it is), 'max' or 'mean_max'.
        feature_d: not used (EVAR configs carry it).
    """
    weight_file: Optional[str] = None
    sample_rate: int = 16000
    n_fft: int = 512
    window_size: int = 512
    hop_size: int = 160
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 8000.0
    output_layers: Any = -1  # -1 / 1: fc1 clip embedding; 0: conv block 6 frames
    temporal_pooling_type: str = 'mean'
    feature_d: Optional[int] = None  # informational (EVAR configs carry it)



def dft_kernels(n_fft: int, win_length: int) -> tuple:
    """Periodic-Hann-windowed DFT rows (real, imaginary) as [n_fft // 2 + 1, 1, n_fft] Conv1d weights."""
    window = torch.zeros(n_fft, dtype=torch.float64)
    start = (n_fft - win_length) // 2
    window[start:start + win_length] = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None, :]
    phase = 2 * math.pi * k * n / n_fft
    return ((torch.cos(phase) * window)[:, None].float(), (-torch.sin(phase) * window)[:, None].float())


class _STFT(nn.Module):
    def __init__(self, n_fft: int, win_length: int, hop: int):
        super().__init__()
        self.conv_real = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, n_fft // 2 + 1, n_fft, stride=hop, bias=False)
        real, imag = dft_kernels(n_fft, win_length)
        with torch.no_grad():
            self.conv_real.weight.copy_(real)
            self.conv_imag.weight.copy_(imag)


class _SpectrogramExtractor(nn.Module):
    def __init__(self, n_fft: int, win_length: int, hop: int):
        super().__init__()
        self.stft = _STFT(n_fft, win_length, hop)


class _LogmelExtractor(nn.Module):
    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float):
        super().__init__()
        self.melW = nn.Parameter(slaney_mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max), requires_grad=False)


class ConvBlock(nn.Module):
    """CNN14's block: [3x3 conv without bias, BatchNorm, ReLU] twice, padding 1 (pooling is the caller's)."""
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, time_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x [B, C, T, F]; time_mask [B, 1, T, 1] (None: no padding in the batch)."""
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2)):
            if time_mask is not None:
                x = x * time_mask
            x = F.relu(bn(conv(x)))
        return x


class Cnn14Net(nn.Module):
    """The official module tree (front end tensors, bn0, conv blocks, fc1, fc_audioset)."""

    def __init__(self, p: CNN14Params, channels=CHANNELS, classes: int = 527):
        super().__init__()
        self.spectrogram_extractor = _SpectrogramExtractor(p.n_fft, p.window_size, p.hop_size)
        self.logmel_extractor = _LogmelExtractor(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max)
        self.bn0 = nn.BatchNorm2d(p.n_mels)
        cin = 1
        for i, cout in enumerate(channels, 1):
            setattr(self, f'conv_block{i}', ConvBlock(cin, cout))
            cin = cout
        self.fc1 = nn.Linear(cin, cin)
        self.fc_audioset = nn.Linear(cin, classes)
        self.n_fft, self.hop = p.n_fft, p.hop_size

    def logmel(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, N] -> [B, n_mels, 1 + N // hop] log-mel in dB."""
        x = F.pad(wav[:, None], (self.n_fft // 2, self.n_fft // 2), mode='reflect')
        stft = self.spectrogram_extractor.stft
        kernels = torch.cat([stft.conv_real.weight, stft.conv_imag.weight])  # one pass for both parts
        real, imag = F.conv1d(x, kernels, stride=stft.conv_real.stride).chunk(2, dim=1)
        power = real.square() + imag.square()  # [B, 257, T]
        mel = torch.matmul(power.transpose(1, 2), self.logmel_extractor.melW).transpose(1, 2)
        return 10.0 * torch.log10(mel.clamp(min=1e-10))

    def forward(self, logmel: torch.Tensor, frame_lengths: torch.Tensor) -> tuple:
        """logmel [B, n_mels, T], zero past each clip's end -> (conv frames [B, T', C], their lengths, fc1 clip
        embedding [B, C])."""
        x = self.bn0(logmel.unsqueeze(-1)).squeeze(-1)  # BN over mel bins, as the official (B, mel, T, 1) view
        x = x.transpose(1, 2).unsqueeze(1)  # [B, 1, T, F]
        padded = bool((frame_lengths < x.shape[2]).any())
        for i in range(1, 7):
            mask = lengths_to_mask(frame_lengths, x.shape[2])[:, None, :, None].to(x.dtype) if padded else None
            x = getattr(self, f'conv_block{i}')(x, mask)
            if i <= POOLED_BLOCKS:
                x = F.avg_pool2d(x, 2)
                frame_lengths = torch.div(frame_lengths, 2, rounding_mode='floor')
        frames = x.mean(dim=3).transpose(1, 2)  # [B, T', C]
        valid = lengths_to_mask(frame_lengths, frames.shape[1]).unsqueeze(-1)
        mean = (frames * valid).sum(1) / frame_lengths.clamp(min=1)[:, None].to(frames.dtype)
        peak = frames.masked_fill(~valid, float('-inf')).amax(1)
        clip = F.relu(self.fc1(peak + mean))
        return frames, frame_lengths, clip


class CNN14(AudioRepr):
    """PANNs CNN14 (Kong et al., TASLP 2020; qiuqiangkong/audioset_tagging_cnn, 16 kHz checkpoint): waves [B, N]
    float32 at 16 kHz -> Frames [B, 1, 2048] (the fc1 embedding) or [B, T, 2048] (conv block 6, one per 0.32 s).

    Raises:
        EvarError: output_layers other than 0 or -1 / 1, or a missing or mismatched weight file (at construction).
    """
    Params = CNN14Params
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the log-mel at `encode`'s start

    def __init__(self, params: CNN14Params):
        super().__init__(params)
        state = load_checkpoint(params.weight_file, 'PANNs CNN14', WEIGHTS_URL)
        channels = []
        for i in range(1, 7):
            w = state.get(f'conv_block{i}.conv1.weight')
            if w is None or w.dim() != 4:
                raise EvarError(f'PANNs CNN14: weight file {params.weight_file} has no conv_block{i}.conv1.weight; '
                                f'expected an official Cnn14 checkpoint (keys spectrogram_extractor.*, bn0.*, '
                                f'conv_block1-6.*, fc1.*, fc_audioset.*).')
            channels.append(int(w.shape[0]))
        classes = int(state['fc_audioset.weight'].shape[0]) if 'fc_audioset.weight' in state else 527
        self.body = Cnn14Net(params, channels, classes)
        load_strict(self.body, state, params.weight_file)
        # The official DFT kernels and mel filters are front-end constants stored as parameters: never trained.
        self.body.spectrogram_extractor.requires_grad_(False)
        self.body.logmel_extractor.requires_grad_(False)
        self.conv_output = self._conv_output(params.output_layers)
        self.min_samples = (TIME_STRIDE - 1) * params.hop_size

    def patch_embedding(self) -> nn.Module:
        """The convolutional stem: CNN14's first block (two 3x3 convolutions with BatchNorm)."""
        return self.body.conv_block1

    @property
    def frame_hop_sec(self) -> Optional[float]:
        """Conv block 6 frames (output_layers 0): 32 log-mel frames apart; the fc1 clip embedding: None (one per
        clip)."""
        return self.params.hop_size * TIME_STRIDE / self.params.sample_rate if self.conv_output else None

    @property
    def embedding_dim(self) -> int:
        """fc1's width, which equals conv block 6's channels (2048 in the official checkpoint)."""
        return self.body.fc1.out_features

    @staticmethod
    def _conv_output(output_layers) -> bool:
        choice = output_layers[0] if isinstance(output_layers, (list, tuple)) and len(output_layers) == 1 \
            else output_layers
        if choice in (0, '0'):
            return True
        if choice in (-1, 1, '-1', '1'):
            return False
        raise EvarError(f'PANNs CNN14: output_layers must be 0 (conv block 6 frames) or -1 / 1 (fc1 clip '
                        f'embedding); the two have different frame rates and cannot be combined. Got {output_layers!r}.')

    def features(self, wav, lengths):
        """Log-mel in dB [B, n_mels, T] of each clip's own samples (reflect-padded at its own ends), clips shorter
        than min_samples (4960) extended with zeros to it; frame counts [B] = 1 + max(n, 4960) // hop_size."""
        wav = wav * lengths_to_mask(lengths, wav.shape[-1])
        lengths = lengths.clamp(min=self.min_samples)  # short clips: extended with digital silence
        if wav.shape[-1] < self.min_samples:
            wav = F.pad(wav, (0, self.min_samples - wav.shape[-1]))
        frames = 1 + torch.div(lengths, self.params.hop_size, rounding_mode='floor')
        if bool((lengths == wav.shape[-1]).all()):
            return self.body.logmel(wav), frames
        out = wav.new_zeros(wav.shape[0], self.params.n_mels, int(frames.max()))
        for i, n in enumerate(lengths.tolist()):  # the reflect padding at a clip's end must be its own
            out[i, :, :int(frames[i])] = self.body.logmel(wav[i:i + 1, :n])[0]
        return out, frames

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of log-mels [B, n_mels, T] with `feat_lengths` [B] frames: conv block 6 frames [B, T // 32, 2048]
        masked by their valid counts (output_layers 0), else the fc1 clip embedding [B, 1, 2048], mask all True."""
        feats = self.augment_input(feats)  # dB log-mel: the network's bn0 standardises it
        feats = feats * lengths_to_mask(feat_lengths, feats.shape[-1]).unsqueeze(1)
        frames, frame_lengths, clip = self.body(feats, feat_lengths)
        if self.conv_output:
            return Frames(frames, lengths_to_mask(frame_lengths, frames.shape[1]))
        return Frames(clip.unsqueeze(1), torch.ones(clip.shape[0], 1, dtype=torch.bool, device=clip.device))

    def clip_logits(self, wav: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """AudioSet tag logits [B, classes] (the official `clipwise_output` before its sigmoid)."""
        _, _, clip = self.body(*self.features(wav, lengths))
        return self.body.fc_audioset(clip)
