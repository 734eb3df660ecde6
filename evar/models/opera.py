"""OPERA-CT (Zhang et al., NeurIPS 2024 datasets and benchmarks): the contrastive HTS-AT encoder of the OPERA
respiratory-sound foundation models, checkpoint encoder-operaCT.ckpt.

The encoder is HTS-AT's Swin transformer with the official sizes (96-d patches, depths 2-2-6-2, 256 x 256 image of
64 mels), built from `evar.models.htsat` (transformers' CLAP audio tower holding the official tensors). The lightning
checkpoint's `encoder.encoder.htsat.*` tensors are loaded strictly in the official names; dropped by name are the
contrastive projection head (`g`, `layer_norm`, `linear`), HTS-AT's classifier (`tscam_conv`, `head`), its unused
torchlibrosa constants and the shifted-window attention masks (constants transformers rebuilds).

Front end, per clip, as the official `extract_opera_feature` (src/benchmark/model_util.py, src/util.py), which
embeds one recording at a time:
1. leading and trailing silence trimmed as `librosa.effects.trim(frame_length=1600, hop_length=800, top_db=60)`:
   RMS of zero-padded centred frames, in dB against the loudest frame; frames above -60 dB are kept;
2. a clip shorter than `input_sec` (8 s) after trimming is repeat-padded to exactly 8 s as `_duplicate_padding`
   with its fixed seed does: copies of the clip precede it, so the padded clip ends with the clip itself;
3. |STFT|^2 (n_fft 1024, hop 512, periodic Hann, centred with zero padding as librosa 0.10), 64 Slaney mel filters
   50-8000 Hz, `power_to_db(ref=max)` (amin 1e-10, top_db 80), then min-max scaled to [0, 1] over the clip.
The encoder takes those frames (251 for 8 s) with its BatchNorm and stretches them to 1024 (bicubic); a clip
longer than 1024 frames (32.8 s) is read in 1024-frame crops every 512 frames, starting while at least 1026 frames
remain from the start of the crop (the official loop `range(0, T - 1025, 512)`: the tail past the last crop is not
seen; with exactly 1025 frames, where the official loop runs no crop, the first 1024 frames are used).

Output: one 768-d frame per crop (the official `latent_output`, HTS-AT's pooled last stage); mean pooling gives the
official clip feature. EVAR's wrapper differs: it trims and min-max scales a whole batch at once (the batch's
loudest clip sets every clip's reference) and fails on clips shorter than 8 s; here each clip is processed alone.

Checked against the official code (evelyn0414/OPERA `HTSATWrapper` and `get_entire_signal_librosa`, librosa 0.11,
random init, strict load into this model) on real ESC-50 clips of 1.3 and 5.0 s (padded), 11.5 s with silent ends
(trimmed) and 60 s (two crops): `python benchmarks/parity_opera.py --official <repo> --audio_glob '<clips>'`;
min-max log-mel within 1.9e-7, embeddings within 1.7e-7 relative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import EvarError
from .base import AudioRepr, Frames, load_checkpoint
from .htsat import (HTSAT_IGNORED, SwinArch, build_swin, frames_from_pieces, load_official, power_mel, run_in_groups,
                    slaney_mel_filterbank, strip_prefix)

WEIGHTS_URL = 'https://huggingface.co/evelyn0414/OPERA (file encoder-operaCT.ckpt; code github.com/evelyn0414/OPERA)'
CHECKPOINT_PREFIX = 'encoder.encoder.htsat.'


@dataclass(frozen=True)
class OperaCTParams(SwinArch):  # architecture: OPERA's src/model/htsat/config.py, as HTS-AT's
    """YAML keys of `opera_ct`: SwinArch's encoder sizes (which must be the checkpoint's) and:

    Keys:
        weight_file: the OPERA lightning checkpoint encoder-operaCT.ckpt.
        feature_d: not used (EVAR configs carry it).
        sample_rate: Hz of the input waves (16000, OPERA's rate).
        n_fft, hop_size: FFT size (= periodic Hann window) and hop in samples (1024, 512).
        n_mels: Slaney mel bins (64); f_min, f_max: Hz, the mel filters' range (50-8000).
        input_sec: seconds; trimmed clips shorter than this are repeat-padded to it.
        trim: trim leading and trailing silence first, as the official feature extraction does.
        top_db: dB below the loudest 100 ms frame under which leading / trailing frames are trimmed.
        temporal_pooling_type: 'mean' (the official clip feature), 'max' or 'mean_max'.
        chunk_batch: crops per forward pass (bounds memory; embeddings do not depend on it).
    """
    weight_file: Optional[str] = None
    feature_d: int = 768  # informational (EVAR configs carry it)
    sample_rate: int = 16000
    n_fft: int = 1024
    hop_size: int = 512
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 8000.0
    input_sec: float = 8.0  # trimmed clips shorter than this are repeat-padded to it
    trim: bool = True  # the official feature extraction trims leading/trailing silence
    top_db: float = 60.0  # trimming threshold below the loudest frame
    temporal_pooling_type: str = 'mean'
    chunk_batch: int = 16  # crops per forward pass (memory bound; embeddings do not depend on it)


def trim_silence(y: torch.Tensor, top_db: float, frame_length: int, hop: int) -> torch.Tensor:
    """librosa.effects.trim: keep from the first to the last frame whose RMS is within `top_db` of the loudest."""
    padded = torch.nn.functional.pad(y.double()[None], (frame_length // 2, frame_length // 2))[0]
    frames = padded.unfold(0, frame_length, hop)
    power = frames.pow(2).mean(1)  # RMS squared
    db = 10.0 * torch.log10(power.clamp(min=1e-10)) - 10.0 * torch.log10(power.max().clamp(min=1e-10))
    loud = torch.nonzero(db > -top_db).flatten()
    if loud.numel() == 0:
        return y[:0]
    start = int(loud[0]) * hop
    end = min(y.shape[0], (int(loud[-1]) + 1) * hop)
    return y[start:end]


def repeat_pad(y: torch.Tensor, length: int) -> torch.Tensor:
    """The official repeat padding (seeded branch 'pad the front'): sample t of the result is y[(t - left) mod n],
    left = length - n, so the clip ends the padded signal and whole or partial copies of it come before."""
    n = y.shape[0]
    left = length - n
    index = (torch.arange(length, device=y.device) - left) % n
    return y[index]


class OperaCT(AudioRepr):
    """OPERA-CT (Zhang et al., NeurIPS 2024 datasets and benchmarks; evelyn0414/OPERA): waves [B, N] float32 at
    16 kHz -> Frames [B, C, 768], one per 1024-frame crop of each clip's trimmed, repeat-padded log-mel (C = 1 for
    clips up to 32.8 s after trimming).

    Raises:
        EvarError: a missing weight file or one without the encoder.encoder.htsat.* tensors, or tensors that do not
            match the Swin sizes (at construction).
    """
    Params = OperaCTParams
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the log-mel at `encode`'s start

    def __init__(self, params: OperaCTParams):
        super().__init__(params)
        p = params
        self.swin = build_swin(p.spec_size, p.n_mels, p.patch_size, p.patch_stride, p.embed_dim, p.depths,
                               p.num_heads, p.swin_window).eval()
        self.register_buffer('mel_fb', slaney_mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max),
                             persistent=False)
        state = load_checkpoint(p.weight_file, 'OPERA-CT', WEIGHTS_URL)
        if not any(k.startswith(CHECKPOINT_PREFIX) for k in state):
            raise EvarError(f'OPERA-CT: weight file {p.weight_file} has no {CHECKPOINT_PREFIX}* tensors; expected the '
                            f'OPERA lightning checkpoint encoder-operaCT.ckpt.')
        load_official(self.swin, strip_prefix(state, CHECKPOINT_PREFIX), p.weight_file, HTSAT_IGNORED)
        self.image_frames = p.spec_size * (p.spec_size // p.n_mels)  # 1024 frames per crop
        self.trim_frame = int(p.sample_rate / 10)  # the official 100 ms frames, 50 ms hop

    def patch_embedding(self) -> torch.nn.Module:
        """The Swin transformer's patch embedding (a strided convolution over the log-mel image)."""
        return self.swin.audio_encoder.patch_embed

    @property
    def frame_hop_sec(self) -> None:
        """None: one embedding per 1024-frame crop of the trimmed clip (clips under `input_sec` are repeated up to
        it), so the number of frames does not follow the clip's length."""
        return None

    @property
    def embedding_dim(self) -> int:
        """The Swin's final width: embed_dim doubled at each of the stages after the first."""
        return self.params.embed_dim * 2 ** (len(self.params.depths) - 1)

    def _one_clip(self, y: torch.Tensor) -> torch.Tensor:
        p = self.params
        if p.trim:
            y = trim_silence(y, p.top_db, self.trim_frame, self.trim_frame // 2)
        if y.shape[0] == 0:
            raise EvarError('OPERA-CT: a clip is empty.')
        target = int(p.input_sec * p.sample_rate)
        if y.shape[0] < target:
            y = repeat_pad(y, target)
        power = power_mel(y[None], p.n_fft, self.mel_fb, p.n_fft, p.hop_size, 'constant')[0]  # [T, mels]
        db = 10.0 * torch.log10(power.clamp(min=1e-10))
        db = db - db.max()  # ref = max (the floor 1e-10 is far below any non-silent clip's peak)
        db = db.clamp(min=-80.0)
        low, high = db.min(), db.max()
        return (db - low) / (high - low) if bool(high > low) else db

    def features(self, wav: torch.Tensor, lengths: torch.Tensor):
        """Per clip alone: trimmed, repeat-padded to input_sec, log-mel min-max scaled to [0, 1] over the clip;
        [B, n_mels, T] (T = 1 + trimmed-and-padded samples // hop_size, 251 for 8 s), zero past each clip's frames,
        and the frame counts [B].

        Raises:
            EvarError: a clip of zero samples.
        """
        mels = [self._one_clip(wav[i, :int(n)]) for i, n in enumerate(lengths.tolist())]
        feat_lengths = torch.tensor([m.shape[0] for m in mels], device=wav.device)
        feats = wav.new_zeros(len(mels), self.params.n_mels, int(feat_lengths.max()))
        for i, m in enumerate(mels):
            feats[i, :, :m.shape[0]] = m.T
        return feats, feat_lengths

    def _crops(self, mel: torch.Tensor) -> list:
        size = self.image_frames
        if mel.shape[0] <= size:
            return [mel]
        starts = list(range(0, mel.shape[0] - size - 1, size // 2)) or [0]
        return [mel[s:s + size] for s in starts]

    def encode(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> Frames:
        """Frames of `features`' output [B, n_mels, T] with `feat_lengths` [B]: the pooled Swin output of each crop
        (the whole clip up to 1024 frames, else 1024-frame crops every 512), [B, C, 768], masked past a clip's crops."""
        feats = self.augment_input(feats)
        crops, counts = [], []
        for i, n in enumerate(feat_lengths.tolist()):
            parts = self._crops(feats[i, :, :int(n)].T)
            crops += parts
            counts.append(len(parts))
        latents = run_in_groups(self._pooled, crops, self.params.chunk_batch)
        return frames_from_pieces(latents, counts)

    def _pooled(self, crops: torch.Tensor) -> torch.Tensor:
        """Crops [N, T, n_mels] -> the encoder's pooled output as one frame each [N, 1, D]."""
        return self.swin(input_features=crops.unsqueeze(1)).pooler_output[:, None]
