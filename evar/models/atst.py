"""ATST-Clip and ATST-Frame (Li and Li, Interspeech 2022; Li, Shao and Li, IEEE/ACM TASLP 2024): the audio
teacher-student transformers of Audio-WestlakeU/audiossl, written here in plain torch with the official key names.

Both encoders are ViTs over patches of 64 mel bins x 4 frames (one token per 40 ms), with learned absolute positional
embeddings for 250 patches (10 s) that are cut to the input's length, pre-norm blocks without qkv bias, LayerNorm
eps 1e-6 and erf GELU. The released checkpoints hold the whole teacher-student pair; the teacher's encoder is used,
as the official loaders do.

Front end (official `FreezingTransform` / atstframe `embedding.py`): 16 kHz, torchaudio MelSpectrogram defaults
(|STFT|^2, n_fft 1024, hop 160, periodic Hann, centred with reflect padding, 64 HTK mel filters 60-7800 Hz without
area normalisation), 10 log10(max(mel, 1e-10)), floored at 80 dB below the clip's own maximum, then mapped from
[-79.6482, 50.6842] dB to [-1, 1]. The floor is taken over the clip's own frames, so padding never moves it.

ATST-Clip (`atst_clip`), as the official linear evaluation (`get_intermediate_layers_chunks`, chunk 6 s): clips
longer than `crop_sec` (12 s) are cut to their central 12 s (official `CentralCrop`; null keeps the whole clip); the
log-mel is cut into chunks of 601 frames, each run alone with a [CLS] token; a chunk's vector concatenates the [CLS]
outputs of the last `n_blocks` blocks and then their patch averages (1536-d for one block). The output frames are
these chunk vectors and the mask is the official chunk selection (the first chunk always, a later one only when
more than 300 frames remain), so mean pooling gives exactly the official clip embedding. One quirk is kept on
purpose, as it shapes the official (and EVAR's) embedding: a chunk's patch sum is divided by the number of patches
left in the clip from that chunk on, not by the patches in the chunk, so the average part of every chunk but the
last is scaled down (by 150/250 for the first chunk of a 10 s clip).

ATST-Frame (`atst_frame`), as the official `get_timestamp_embedding`: the log-mel is cut into 10 s chunks (1001
frames, the positional table's length), each run alone; every patch is a 40 ms output frame carrying the
`frame_norm`-ed outputs of the last `n_blocks` blocks concatenated (12 blocks: 9216-d, as EVAR). Each chunk drops its
last frames%4 frames as the official patching does. The official `get_scene_embedding`, which EVAR's AR_ATST_Frame
returns, averages chunk means rather than frames (the same for clips up to 10 s; for a 20.5 s clip mean pooling of
the 40 ms frames differs from it by 0.24 relative, benchmarks/parity_evar.py): `scene_chunks: true` (set in
config/atst_frame.yaml) outputs one frame per chunk, its patch mean, so mean pooling gives EVAR's embedding;
config/atst_frame_patches.yaml keeps the 40 ms frames.

Padding: each clip's chunks are cut from its own frames, and attention never sees a patch past the clip's end
(key masks built from the official per-chunk patch lengths), so a clip's output does not depend on the batch.
Chunks that hold no valid patch are not run at all.

Checked against the official code (audiossl at ec3a14d: `AST_base.get_intermediate_layers_chunks` with
`FreezingTransform`, and `FrameAST_base` through `embedding.get_scene_embedding` / `get_timestamp_embedding`,
random init, state dicts loaded strictly here) on real clips of 5.0, 6.35, 13.8, 15.2 and 25.8 s, in a padded batch:
`python benchmarks/parity_atst.py --audiossl <checkout>`: front end max abs difference 1.3e-5 (on the [-1, 1]
scale, i.e. under 1e-3 dB), ATST-Clip embeddings within 7.6e-7 relative (n_blocks 1 and 2, with and without the
crop), ATST-Frame frames within 2.2e-6 relative with equal frame counts, scene embeddings within 5.3e-7.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..errors import EvarError
from ..frontend import Spectrogram
from .base import AudioRepr, Frames, lengths_to_mask, load_checkpoint, load_strict, read_tensors
from .vit import Block

CLIP_URL = ('https://checkpointstorage.oss-cn-beijing.aliyuncs.com/atst/base.ckpt (linked from '
            'https://github.com/Audio-WestlakeU/audiossl/tree/main/audiossl/methods/atst)')
FRAME_URL = ('https://drive.google.com/file/d/1bGJSZWlAIIJ6GL5Id5dW0PTB72DL-QDQ (atstframe_base, linked from '
             'https://github.com/Audio-WestlakeU/audiossl/tree/main/audiossl/methods/atstframe)')
DB_RANGE = (-79.6482, 50.6842)  # the official MinMax bounds of the dB log-mel
TEACHER_PREFIX = 'model.teacher.encoder.'  # the encoder inside the official lightning checkpoints
ROWS_PER_PASS = 16  # chunks run through the transformer at once (bounds memory on long clips)


@dataclass(frozen=True)
class ATSTParams:
    """YAML keys shared by `atst_clip` and `atst_frame` (defaults: the base models, ATST-Frame's chunking).

    Keys:
        weight_file: the official checkpoint (lightning .ckpt, DINO-style file or bare encoder state dict).
        sample_rate: Hz of the input waves (16000, the training rate).
        n_fft, window_size, hop_size: FFT size, periodic Hann window and hop in samples (1024, 1024, 160).
        n_mels: HTK mel bins (64; a patch spans all of them); f_min, f_max: Hz, the mel filters' range.
        top_db: dB below each clip's own peak where its log-mel is floored.
        embed_dim, depth, num_heads: the encoder's width, blocks and heads (base 768 / 12 / 12; small 384 / 12 / 6);
            they must be the checkpoint's (the strict load checks all but num_heads).
        patch_frames: mel frames per patch (4: 40 ms).
        pos_frames: mel frames the positional table covers (1001: 250 patches).
        chunk_sec: seconds per chunk run alone (chunk_sec * sample_rate / hop_size + 1 frames).
        n_blocks: outputs of the last n_blocks blocks are concatenated (1..depth).
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
        feature_d: not used (EVAR configs carry it).
    """
    weight_file: Optional[str] = None
    sample_rate: int = 16000
    n_fft: int = 1024
    window_size: int = 1024
    hop_size: int = 160
    n_mels: int = 64
    f_min: float = 60.0
    f_max: float = 7800.0
    top_db: float = 80.0
    embed_dim: int = 768  # base; the small models are 384-d with 6 heads
    depth: int = 12
    num_heads: int = 12
    patch_frames: int = 4  # a patch spans all mel bins and this many frames
    pos_frames: int = 1001  # frames covered by the positional table (250 patches)
    chunk_sec: float = 10.0
    n_blocks: int = 12  # outputs of the last n blocks, concatenated
    temporal_pooling_type: str = 'mean'
    feature_d: Optional[int] = None  # informational (EVAR configs carry it)


@dataclass(frozen=True)
class ATSTClipParams(ATSTParams):
    """YAML keys of `atst_clip`: ATSTParams' with chunk_sec 6 s (the official train_len), n_blocks 1, and
    crop_sec, seconds of a longer clip's centre kept before the front end (None: the whole clip)."""
    chunk_sec: float = 6.0  # the official train_len
    n_blocks: int = 1
    crop_sec: Optional[float] = 12.0  # official CentralCrop before the front end; None: the whole clip


@dataclass(frozen=True)
class ATSTFrameParams(ATSTParams):
    """YAML keys of `atst_frame`: ATSTParams' (10 s chunks, the last 12 blocks concatenated), and scene_chunks:
    True gives one output frame per chunk, the mean of its patch frames, so mean pooling is the official
    `get_scene_embedding` (EVAR's AR_ATST_Frame embedding: a mean over chunks, in which a clip's short last chunk
    weighs as much as a full one); False (default) gives one frame per 40 ms patch, for frame-level work."""
    scene_chunks: bool = False  # True: one frame per chunk (its patch mean), as get_scene_embedding / EVAR


# ----------------------------------------------------------------------------------------------------------------
# Reading the official checkpoints.

def read_encoder_state(path: Optional[str], model_name: str, where: str, encoder_keys: set) -> dict:
    """The teacher encoder's tensors from an official checkpoint: a lightning file ('state_dict' with
    'model.teacher.encoder.' keys), a DINO-style file ({'teacher': ...} with 'module.'/'backbone.' prefixes, whose
    projection head the official loader skips), or a bare encoder state dict."""
    if not path or not Path(path).expanduser().is_file():
        load_checkpoint(path, model_name, where)  # raises the message saying where to put the file
    path = Path(path).expanduser()
    ckpt = read_tensors(path, model_name)
    if isinstance(ckpt, dict) and isinstance(ckpt.get('state_dict'), dict):
        state = ckpt['state_dict']
        if any(k.startswith(TEACHER_PREFIX) for k in state):
            state = {k[len(TEACHER_PREFIX):]: v for k, v in state.items() if k.startswith(TEACHER_PREFIX)}
    elif isinstance(ckpt, dict) and isinstance(ckpt.get('teacher'), dict):
        state = {k.replace('module.', '').replace('backbone.', ''): v for k, v in ckpt['teacher'].items()}
        state = {k: v for k, v in state.items() if k.split('.')[0] in encoder_keys}
    else:
        state = ckpt
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvarError(f'{model_name}: weight file {path} does not hold an ATST state dict.')
    return state


# ----------------------------------------------------------------------------------------------------------------
# The encoder.

class PatchLinear(nn.Module):
    """Patches of all mel bins x `frames` frames, each flattened mel-major (bin, frame) and projected linearly."""

    def __init__(self, n_mels: int, frames: int, dim: int):
        super().__init__()
        self.frames = frames
        self.patch_embed = nn.Linear(n_mels * frames, dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [N, F, T] -> [N, T // frames, D]; trailing frames that do not fill a patch are dropped."""
        n, f, t = mel.shape
        w = t // self.frames
        # Explicit sizes: a clip shorter than one patch has w = 0 (its chunk is then the [CLS] token alone).
        patches = mel[..., :w * self.frames].reshape(n, f, w, self.frames).permute(0, 2, 1, 3).reshape(n, w, f * self.frames)
        return self.patch_embed(patches)


class ATSTEncoder(nn.Module):
    """AST (ATST-Clip, with a [CLS] token, final `norm`) or FrameAST (ATST-Frame, final `norm_frame`)."""

    def __init__(self, p: ATSTParams, use_cls: bool):
        super().__init__()
        self.use_cls = use_cls
        self.patch_embed = PatchLinear(p.n_mels, p.patch_frames, p.embed_dim)
        self.mask_embed = nn.Parameter(torch.zeros(1, 1, p.embed_dim))  # used in pre-training only; kept for loading
        if use_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, p.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, p.pos_frames // p.patch_frames + 1, p.embed_dim))
        self.blocks = nn.ModuleList([Block(p.embed_dim, p.num_heads, 4.0, qkv_bias=False, eps=1e-6)
                                     for _ in range(p.depth)])
        final_norm = nn.LayerNorm(p.embed_dim, eps=1e-6)
        if use_cls:
            self.norm = final_norm
        else:
            self.norm_frame = final_norm

    @property
    def final_norm(self) -> nn.LayerNorm:
        """The final LayerNorm under its official name: `norm` (AST) or `norm_frame` (FrameAST)."""
        return self.norm if self.use_cls else self.norm_frame

    def forward(self, mel: torch.Tensor, valid_patches: torch.Tensor, n_blocks: int) -> list:
        """mel [N, F, T] chunks and their valid patch counts [N] -> final-normed tokens [N, (1 +) T', D] of the last
        `n_blocks` blocks. Patches past `valid_patches` are never attended to."""
        x = self.patch_embed(mel)
        n, t, _ = x.shape
        if t + 1 > self.pos_embed.shape[1]:
            raise EvarError(f'ATST: a chunk of {t} patches exceeds the positional table ({self.pos_embed.shape[1] - 1} '
                            f'patches); lower chunk_sec.')
        valid = valid_patches.clamp(max=t)
        if self.use_cls:
            x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1) + self.pos_embed[:, :t + 1]
            key_mask = lengths_to_mask(valid + 1, t + 1)
        else:
            x = x + self.pos_embed[:, 1:t + 1]
            key_mask = lengths_to_mask(valid, t)
            key_mask[:, 0] |= valid == 0  # a chunk with no valid patch: any finite output (it is discarded)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x, key_mask)
            if i >= len(self.blocks) - n_blocks:
                outputs.append(self.final_norm(x))
        return outputs


# ----------------------------------------------------------------------------------------------------------------
# The ARs.

class _ATSTBase(AudioRepr):
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the [-1, 1]-scaled log-mel at `encode`'s start
    use_cls: bool

    def __init__(self, params: ATSTParams, model_name: str, url: str):
        super().__init__(params)
        p = params
        if not 1 <= p.n_blocks <= p.depth:
            raise EvarError(f'{model_name}: n_blocks must be 1..{p.depth}, got {p.n_blocks}.')
        self.spec = Spectrogram(p.sample_rate, p.n_fft, p.window_size, p.hop_size, n_mels=p.n_mels, f_min=p.f_min,
                                f_max=p.f_max, log=False)
        self.encoder = ATSTEncoder(p, self.use_cls)
        own_keys = {k.split('.')[0] for k in self.encoder.state_dict()}
        state = read_encoder_state(p.weight_file, model_name, url, own_keys)
        load_strict(self.encoder, state, p.weight_file)
        self.chunk_frames = int(p.chunk_sec * p.sample_rate / p.hop_size) + 1

    def _crop(self, wav: torch.Tensor, lengths: torch.Tensor):
        return wav, lengths

    def patch_embedding(self) -> nn.Module:
        """The patch embedding (a linear map of each n_mels x patch_frames patch)."""
        return self.encoder.patch_embed

    def features(self, wav, lengths):
        """Log-mel [B, n_mels, T] of waves [B, N] (ATST-Clip: after the central crop): dB floored at the clip's
        peak - top_db, mapped from DB_RANGE to [-1, 1], zero past each clip's frames; frame counts [B] = 1 + n //
        hop_size (n capped at crop_sec for ATST-Clip)."""
        wav, lengths = self._crop(wav, lengths)
        power, frames = self.spec(wav, lengths)
        db = 10.0 * torch.log10(power.clamp(min=1e-10))
        valid = lengths_to_mask(frames, db.shape[-1]).unsqueeze(1)
        peak = db.masked_fill(~valid, float('-inf')).amax(dim=(1, 2), keepdim=True)
        db = torch.maximum(db, peak - self.params.top_db)
        lo, hi = DB_RANGE
        return ((db - lo) / (hi - lo) * 2.0 - 1.0) * valid, frames

    def _chunks(self, feats: torch.Tensor, n_chunks: int) -> torch.Tensor:
        """[B, F, T] -> [B * n_chunks, F, chunk_frames], zero-padded in time; a batch of short clips is not padded to
        a whole chunk (the padded patches are masked anyway, so this only saves time)."""
        b, f, t = feats.shape
        c = self.chunk_frames if n_chunks > 1 else min(t, self.chunk_frames)
        feats = nn.functional.pad(feats, (0, n_chunks * c - t))
        return feats.reshape(b, f, n_chunks, c).transpose(1, 2).reshape(b * n_chunks, f, c)

    def _run(self, chunks: torch.Tensor, valid: torch.Tensor, run_rows: torch.Tensor, pack) -> torch.Tensor:
        """Runs the encoder on the chunks where `run_rows` is True, ROWS_PER_PASS at a time; `pack(outputs,
        valid)` turns a pass's block outputs into rows of the result. Other rows stay zero."""
        out = None
        rows = torch.nonzero(run_rows).flatten()
        for start in range(0, len(rows), ROWS_PER_PASS):
            idx = rows[start:start + ROWS_PER_PASS]
            packed = pack(self.encoder(chunks[idx], valid[idx], self.params.n_blocks), valid[idx])
            if out is None:
                out = packed.new_zeros(chunks.shape[0], *packed.shape[1:])
            out[idx] = packed
        return out


class ATSTClip(_ATSTBase):
    """One output frame per 6 s chunk (the official chunk selection as the mask); mean pooling = the official
    clip embedding."""
    Params = ATSTClipParams
    use_cls = True

    def __init__(self, params: ATSTClipParams):
        super().__init__(params, 'ATST-Clip', CLIP_URL)

    @property
    def frame_hop_sec(self) -> float:
        """One frame per chunk of `chunk_sec` (the chunk's mel frames)."""
        return self.chunk_frames * self.params.hop_size / self.params.sample_rate

    @property
    def embedding_dim(self) -> int:
        """[CLS] and mean patch token of each of the last `n_blocks` blocks."""
        return 2 * self.params.n_blocks * self.params.embed_dim

    def _crop(self, wav, lengths):
        if self.params.crop_sec is None:
            return wav, lengths
        size = int(self.params.sample_rate * self.params.crop_sec)
        if not bool((lengths > size).any()):
            return wav, lengths
        out = wav.new_zeros(wav.shape[0], min(wav.shape[-1], size))
        for i, n in enumerate(lengths.tolist()):
            start = (n - size) // 2 if n > size else 0
            out[i, :min(n, size)] = wav[i, start:start + min(n, size)]
        return out, lengths.clamp(max=size)

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of log-mels [B, n_mels, T] with `feat_lengths` [B] frames: chunk vectors [B, T // chunk_frames + 1,
        2 n_blocks embed_dim] ([CLS] outputs, then patch averages), masked by the official chunk selection (the
        first chunk, and a later one when more than half a chunk of frames remains).

        Raises:
            EvarError: a chunk longer than the positional table (chunk_sec too large).
        """
        feats = self.augment_input(feats)
        b, c = feats.shape[0], self.chunk_frames
        n_chunks = feats.shape[-1] // c + 1  # the official count (a trailing empty chunk is never selected)
        starts = torch.arange(n_chunks, device=feats.device) * c
        remaining = (feat_lengths[:, None] - starts[None, :]).clamp(min=0)  # frames left from each chunk on
        selected = remaining > torch.where(starts == 0, 0, c // 2)[None, :]
        # Official patch count of a chunk: from the frames left in the whole clip, not only in the chunk. It bounds
        # the attention (no effect past the chunk's end) and divides the patch sum (see the module docstring).
        patch_count = torch.div(remaining, self.params.patch_frames, rounding_mode='floor')

        def pack(outputs, count):
            mask = lengths_to_mask(count.clamp(max=outputs[0].shape[1] - 1), outputs[0].shape[1] - 1)
            cls = [o[:, 0] for o in outputs]
            avg = [(o[:, 1:] * mask.unsqueeze(-1)).sum(1) / (count.unsqueeze(-1) + 1e-6) for o in outputs]
            return torch.cat(cls + avg, dim=-1)

        x = self._run(self._chunks(feats, n_chunks), patch_count.flatten(), selected.flatten(), pack)
        return Frames(x.reshape(b, n_chunks, -1), selected)


class ATSTFrame(_ATSTBase):
    """One output frame per 40 ms patch, the last `n_blocks` blocks concatenated."""
    Params = ATSTFrameParams
    use_cls = False

    def __init__(self, params: ATSTFrameParams):
        super().__init__(params, 'ATST-Frame', FRAME_URL)

    @property
    def frame_hop_sec(self) -> float:
        """One frame per patch of `patch_frames` mel frames (per chunk of `chunk_sec` with scene_chunks)."""
        frames = self.chunk_frames if self.params.scene_chunks else self.params.patch_frames
        return frames * self.params.hop_size / self.params.sample_rate

    @property
    def embedding_dim(self) -> int:
        """The last `n_blocks` blocks' outputs side by side."""
        return self.params.n_blocks * self.params.embed_dim

    def encode(self, feats, feat_lengths) -> Frames:
        """Frames of log-mels [B, n_mels, T] with `feat_lengths` [B] frames: one per whole 4-frame patch of each
        chunk, [B, T', n_blocks embed_dim], zero and masked False past each clip's patches (a clip with no whole
        patch, under 4 frames, has none valid). With scene_chunks, one per chunk instead, [B, chunks, n_blocks
        embed_dim]: as the official get_scene_embedding, every chunk holding any of the clip's frames counts, its
        patch sum divided by (patches + 1e-6), so a last chunk of 1-3 frames adds a zero vector.

        Raises:
            EvarError: a chunk longer than the positional table (chunk_sec too large).
        """
        feats = self.augment_input(feats)
        b, c, pf = feats.shape[0], self.chunk_frames, self.params.patch_frames
        n_chunks = max(1, -(-feats.shape[-1] // c))
        starts = torch.arange(n_chunks, device=feats.device) * c
        in_chunk = (feat_lengths[:, None] - starts[None, :]).clamp(min=0, max=c)
        valid = torch.div(in_chunk, pf, rounding_mode='floor')  # patches of each chunk from the clip's own frames
        chunks = self._chunks(feats, n_chunks)
        x = self._run(chunks, valid.flatten(), valid.flatten() > 0, lambda outputs, _: torch.cat(outputs, dim=-1))
        if x is None:  # no clip has a whole patch
            x = feats.new_zeros(b * n_chunks, chunks.shape[-1] // pf, self.embedding_dim)
        if self.params.scene_chunks:
            x = x.reshape(b, n_chunks, -1, x.shape[-1])
            patch_mask = lengths_to_mask(valid.flatten(), x.shape[2]).reshape(b, n_chunks, -1, 1)
            means = (x * patch_mask).sum(2) / (valid.unsqueeze(-1) + 1e-6)
            return Frames(means, in_chunk > 0)
        # Every chunk but a clip's last is full, so its valid frames are contiguous from the start.
        x = x.reshape(b, -1, x.shape[-1])
        total = valid.sum(1)
        mask = lengths_to_mask(total, x.shape[1])
        return Frames(x * mask.unsqueeze(-1), mask)
