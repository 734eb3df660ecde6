"""MS-CLAP (Microsoft CLAP, Elizalde et al. ICASSP 2023 "CLAP: learning audio concepts from natural language
supervision"; Elizalde et al. 2023 "Natural language supervision for general-purpose audio representations",
arXiv:2309.05767), versions 2022 and 2023, from the publisher's files `CLAP_weights_2022.pth` /
`CLAP_weights_2023.pth` (github.com/microsoft/CLAP, PyPI `msclap` 1.3.4; files at huggingface.co/microsoft/msclap
and zenodo.org/record/8378278).

Recipe (msclap's CLAPWrapper, models/clap.py, audio.py, htsat.py and configs/config_<version>.yml; the per-version
table is `VERSIONS` below):
  waves      resampled to 44.1 kHz (torchaudio's `Resample`: Hann-windowed sinc, 6 zero crossings, roll-off 0.99,
             reproduced here in plain torch: `sinc_resample`), then cut into windows of `duration` seconds (5 s for
             2022, 7 s for 2023); a window shorter than that is filled by repeating its samples (msclap's rule: the
             clip tiled ceil(W / n) times and cut to W samples).
  2022 audio CNN14 (evar.models.panns' network, official key names) on |STFT|^2 of n_fft = window 1024 (the yml's
             n_fft 1028 is unused), hop 320, periodic Hann, centred with reflect padding, 64 Slaney mel filters
             50-14000 Hz at 44.1 kHz, 10 log10(max(mel, 1e-10)); max + mean over time; fc1 + ReLU (2048-d).
  2023 audio HTS-AT (evar.models.htsat's Swin on transformers' ClapAudioModel). msclap's HTSATWrapper ignores the
             yml's front end and uses HTS-AT's config.py: mel filters built for 32 kHz (50-14000 Hz at sr 32000,
             n_fft 1024, hop 320) applied to the 44.1 kHz STFT, so the bands really span 69-19294 Hz. A 7 s window
             has 965 frames, stretched (bicubic) to the Swin's 1024; `latent_output` (768-d) is the mean of the
             last stage's LayerNorm-ed tokens.
  projection both towers: linear1 (no bias) -> GELU -> linear2 (no bias) -> LayerNorm(linear1 + linear2): 1024-d.
  text       2022: BERT (bert-base-uncased), [CLS] token of `[CLS] text [SEP]` padded to 100 tokens. 2023: GPT-2,
             `text + ' <|endoftext|>'` padded to 77 tokens with '!' (id 0, msclap's pad token); the token taken is
             at index (number of ids != the pad id) - 1, msclap's rule (a caption containing '!' shifts it, as in
             training). Never truncated below the text model's position limit
             (msclap does not truncate; text_len is a minimum).

Clip embedding (EVAR's `AR_MSCLAP.encode_audio` = msclap's `get_audio_embeddings`): the projected audio vector,
not L2-normalised (zero-shot and retrieval normalise it). `encode_text` returns the projected text vector
L2-normalised (the audio–text contract, evar.models.audio_text).

Long clips. msclap (and so EVAR, which passes file names to it) embeds one window at a random start
(`random.randrange(n - W)`), so a test clip's embedding changes from run to run. evar's default (`long_clip:
chunks`) embeds every window from the clip's start (the last one filled by repetition) and pools them (mean), as
evar's other CLAP families embed the whole clip (issue 11: "the whole clip is embedded"); `long_clip: random` is
msclap's rule, `head` its first window only. Clips up to one window give EVAR's embedding in every mode.

Sample rate. EVAR's msclap.yaml sets sample_rate 32000, so EVAR prepares the files at 32 kHz and msclap resamples
them to 44.1 kHz: config/msclap*.yaml do the same (sample_rate 32000, resampled inside the model). That band-limits
the input at 16 kHz, which empties the 2023 front end's top mel bands (they reach 19.3 kHz). `sample_rate: 44100`
feeds the model directly, as msclap does for a 44.1 kHz file.

Checked against msclap 1.3.4 and EVAR's AR_MSCLAP (88ba772) on seeded random weights in the publisher's layout (real
audio-tower sizes) and real clips of 1-20.5 s resampled to 32 kHz, with `PYTHONPATH=<msclap> python
benchmarks/parity_msclap.py --ref_python <EVAR's venv python> --evar_ref <EVAR>`: audio embeddings within 2.2e-6
(2022) and 2.9e-5 (2023, one clip of four; msclap's HTS-AT code run in evar's venv on the same window: 2.0e-6)
relative
(long_clip random with msclap's seed), text 3.8e-7 / 4.2e-7, the resampler within 8.5e-8 of torchaudio's; EVAR's
wrapper gives msclap's embeddings exactly (it calls msclap).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import EvarError
from ..frontend import slaney_mel_filterbank
from .base import AudioRepr, Frames, lengths_to_mask, load_checkpoint, load_strict
from .htsat import HTSAT_IGNORED, SwinArch, build_swin, load_official, power_mel, swin_tokens
from .panns import CNN14Params, Cnn14Net, dft_kernels

WEIGHTS_URL = 'https://huggingface.co/microsoft/msclap (also https://zenodo.org/record/8378278)'
MODEL_RATE = 44100  # msclap resamples every file to 44.1 kHz (configs/config_<version>.yml: sampling_rate)


@dataclass(frozen=True)
class MSCLAPVersion:
    """One MS-CLAP release as msclap's configs/config_<version>.yml and model code define it.

    Attributes:
        audio: 'cnn14' or 'htsat'.
        duration: seconds per window (the yml's `duration`).
        text_model: the hub id of the text tower and tokenizer (the yml's `text_model`).
        text_len: tokens per caption after padding / truncation (`text_len`).
        file_name: the publisher's checkpoint name.

    The widths (the audio encoder's `out_emb`: 2048 / 768, the joint space's `d_proj`: 1024) are read from the
    checkpoint's shapes.
    """
    audio: str
    duration: int
    text_model: str
    text_len: int
    file_name: str


VERSIONS = {
    '2022': MSCLAPVersion('cnn14', 5, 'bert-base-uncased', 100, 'CLAP_weights_2022.pth'),
    '2023': MSCLAPVersion('htsat', 7, 'gpt2', 77, 'CLAP_weights_2023.pth'),
}
# Front ends (Hz / samples): 2022's CNN14 takes the yml's values at 44.1 kHz; 2023's HTS-AT takes HTS-AT's config.py
# values (built for 32 kHz) whatever the yml says. n_fft = window = 1024, hop 320, 64 mels, 50-14000 Hz in both.
MEL_RATE = {'2022': MODEL_RATE, '2023': 32000}
LONG_CLIP = ('chunks', 'head', 'random')
# Checkpoint entries that are constants rebuilt by the code that reads them (older transformers saved them):
# BERT's position ids, GPT-2's causal-mask buffers.
TEXT_BUFFERS = ('embeddings.position_ids', '.attn.bias', '.attn.masked_bias')
GPT2_PAD = '!'  # msclap's pad token for GPT-2 (id 0 in GPT-2's vocabulary)


@dataclass(frozen=True)
class MSCLAPParams(SwinArch):
    """YAML keys of `msclap` (EVAR's config/msclap.yaml loads unchanged).

    Keys:
        weight_file: the checkpoint path, or EVAR's version name 2022 / 2023, meaning
            external/CLAP_weights_<version>.pth.
        version: '2022' or '2023'; None takes it from weight_file (a version name, or a file name containing it).
        text_model: hub id or local `save_pretrained` folder of the text tower's config and tokenizer (None: the
            version's, bert-base-uncased / gpt2). Only its config and tokenizer are read; weights come from
            weight_file.
        sample_rate: Hz of the input waves (EVAR's 32000); the model resamples to 44.1 kHz when it differs.
        long_clip: 'chunks' (every window, pooled), 'head' (the first window) or 'random' (msclap's and EVAR's: one
            window at a random start, not reproducible).
        temporal_pooling_type: pooling of the window embeddings ('mean').
        chunk_batch: windows per forward pass (memory bound; embeddings do not depend on it).
        spec_size ... swin_window: HTS-AT's Swin sizes (2023; the official defaults).
    EVAR's front-end keys (feature_d, n_fft, ..., return_filename), which its wrapper does not read, are accepted by
    evar.config.EVAR_KEYS.
    """
    weight_file: Any = None
    version: Any = None  # '2022' / 2023 (a YAML number is accepted)
    text_model: Optional[str] = None
    sample_rate: int = 32000
    long_clip: str = 'chunks'
    temporal_pooling_type: str = 'mean'
    chunk_batch: int = 8


def resolve_version(p: MSCLAPParams) -> tuple:
    """(version, checkpoint path) from `weight_file` and `version`.

    Raises:
        EvarError: an unknown version, a version that contradicts the weight file's, or no way to tell the version.
    """
    named = str(p.weight_file) if p.weight_file is not None and str(p.weight_file) in VERSIONS else None
    if p.version is not None and str(p.version) not in VERSIONS:
        raise EvarError(f'MS-CLAP: version {p.version!r} is not one of {sorted(VERSIONS)}.')
    guess = named or next((v for v in VERSIONS if p.weight_file is not None and v in Path(str(p.weight_file)).name),
                          None)
    version = str(p.version) if p.version is not None else guess
    if version is None:
        raise EvarError(f'MS-CLAP: cannot tell the version of weight_file {p.weight_file!r}; set version: 2022 or '
                        '2023 (or weight_file: 2022 / 2023 for external/CLAP_weights_<version>.pth).')
    if named and named != version:
        raise EvarError(f'MS-CLAP: weight_file {named} contradicts version {version}.')
    path = f'external/{VERSIONS[version].file_name}' if named else p.weight_file
    return version, path


def sinc_kernel(orig: int, new: int, zeros: int = 6, rolloff: float = 0.99) -> tuple:
    """torchaudio's `Resample` kernel (its default `sinc_interp_hann`, `lowpass_filter_width` = zeros, `rolloff`) for
    `orig` -> `new` Hz, built in float64: (kernel [new', 1, taps], width, orig', new') with orig', new' divided by
    their gcd."""
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    cutoff = min(orig, new) * rolloff
    width = math.ceil(zeros * orig / cutoff)
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig
    t = (-torch.arange(new, dtype=torch.float64)[:, None] / new + taps[None]) * cutoff
    t = t.clamp(-zeros, zeros)
    window = torch.cos(t * math.pi / zeros / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t.where(t != 0, torch.ones_like(t)))
    return (sinc * window * cutoff / orig)[:, None], width, orig, new


def sinc_resample(waves: torch.Tensor, orig: int, new: int, kernel: Optional[tuple] = None) -> torch.Tensor:
    """Band-limited resampling of waves [N, L] from `orig` to `new` Hz -> [N, ceil(L new / orig)], torchaudio's
    `Resample` (the `sinc_kernel`, float64, applied in the waves' dtype; zero outside the clip). `kernel`: a
    `sinc_kernel(orig, new)` already built."""
    if orig == new:
        return waves
    weights, width, orig, new = kernel or sinc_kernel(orig, new)
    n, length = waves.shape
    x = F.pad(waves[:, None], (width, width + orig))
    out = F.conv1d(x, weights.to(waves), stride=orig).transpose(1, 2).reshape(n, -1)
    return out[:, :math.ceil(new * length / orig)]


def fill_window(wave: torch.Tensor, samples: int) -> torch.Tensor:
    """A 1-D wave shorter than `samples` tiled ceil(samples / n) times and cut to `samples` (msclap's rule)."""
    return wave.repeat(-(-samples // wave.shape[0]))[:samples]


class Projection(nn.Module):
    """msclap's projection head: LayerNorm(l1(x) + l2(GELU(l1(x)))), both linears without bias: [.., d_in] ->
    [.., d_out] (dropout 0.5 before the sum, inactive in eval mode)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[.., d_in] -> [.., d_out]."""
        h = self.linear1(x)
        return self.layer_norm(h + self.drop(self.linear2(F.gelu(h))))


def _split(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


class MSCLAP(AudioRepr):
    """MS-CLAP 2022 (CNN14 + BERT) or 2023 (HTS-AT + GPT-2): waves [B, N] float32 at `sample_rate` -> Frames
    [B, windows, 1024] (one projected embedding per window; one frame for clips up to a window) and
    `encode_text(list[str]) -> [N, 1024]` L2-normalised.

    Raises:
        EvarError: (at construction) an unknown version or long_clip, a missing checkpoint (saying where to put it
            and where to get it), a checkpoint that does not match the version's architecture (strict, official key
            names), or a text model whose config cannot be read.
    """
    Params = MSCLAPParams
    augment_point = 'spectrogram'  # fine-tuning's augmentations act on the log-mel at `encode`'s start

    def __init__(self, params: MSCLAPParams):
        super().__init__(params)
        p = params
        if p.long_clip not in LONG_CLIP:
            raise EvarError(f'MS-CLAP: long_clip must be one of {list(LONG_CLIP)}, got {p.long_clip!r}.')
        self.version, path = resolve_version(p)
        self.spec = VERSIONS[self.version]
        self.weight_path = path
        state = load_checkpoint(path, f'MS-CLAP {self.version}', WEIGHTS_URL)
        self.window_samples = self.spec.duration * MODEL_RATE
        self._resampler = sinc_kernel(int(p.sample_rate), MODEL_RATE) if p.sample_rate != MODEL_RATE else None
        if self.spec.audio == 'cnn14':
            self._build_cnn14(_split(state, 'audio_encoder.base.'), path)
        else:
            self._build_htsat(_split(state, 'audio_encoder.base.htsat.'), path)
        projection = _split(state, 'audio_encoder.projection.')
        if 'linear1.weight' not in projection:
            raise EvarError(f'Weight file {path} does not match MS-CLAP {self.version}: missing '
                            'audio_encoder.projection.linear1.weight.')
        self.d_proj, audio_dim = (int(n) for n in projection['linear1.weight'].shape)
        self.audio_projection = Projection(audio_dim, self.d_proj)
        load_strict(self.audio_projection, projection, path)
        self._build_text(state, path)
        self.logit_scale = nn.Parameter(torch.zeros(()), requires_grad=False)  # msclap's, for its similarity
        self._load_logit_scale(state, path)
        known = ('audio_encoder.base.', 'audio_encoder.projection.', 'caption_encoder.', 'logit_scale')
        stray = sorted(k for k in state if not k.startswith(known))
        if stray:
            raise EvarError(f'Weight file {path} does not match MS-CLAP {self.version}: unexpected {stray[:8]}.')
        self._tokenizer = None
        self.eval()

    # --- construction ------------------------------------------------------------------------------------------
    def _build_cnn14(self, state: dict, path) -> None:
        channels = []
        for i in range(1, 7):
            w = state.get(f'conv_block{i}.conv1.weight')
            if w is None or w.dim() != 4:
                raise EvarError(f'Weight file {path} is not MS-CLAP 2022: no audio_encoder.base.conv_block{i}.conv1.'
                                'weight (expected CNN14 under audio_encoder.base.).')
            channels.append(int(w.shape[0]))
        classes = int(state['fc_audioset.weight'].shape[0]) if 'fc_audioset.weight' in state else 527
        front = CNN14Params(sample_rate=MODEL_RATE, n_fft=1024, window_size=1024, hop_size=320, n_mels=64,
                            f_min=50.0, f_max=14000.0)
        self.cnn14 = Cnn14Net(front, channels, classes)
        fc1 = state.get('fc1.weight')
        self.cnn14.fc1 = nn.Linear(channels[-1], int(fc1.shape[0]) if fc1 is not None else channels[-1])
        load_strict(self.cnn14, state, f'{path} (audio_encoder.base.)')
        self.cnn14.spectrogram_extractor.requires_grad_(False)
        self.cnn14.logmel_extractor.requires_grad_(False)

    def _build_htsat(self, state: dict, path) -> None:
        p = self.params
        self.swin = build_swin(p.spec_size, 64, p.patch_size, p.patch_stride, p.embed_dim, p.depths, p.num_heads,
                               p.swin_window)
        self.register_buffer('mel_fb', slaney_mel_filterbank(MEL_RATE['2023'], 1024, 64, 50.0, 14000.0),
                             persistent=False)
        # msclap computes with the file's torchlibrosa constants; they must be the ones computed here.
        real, imag = dft_kernels(1024, 1024)
        for key, ours in (('logmel_extractor.melW', self.mel_fb), ('spectrogram_extractor.stft.conv_real.weight', real),
                          ('spectrogram_extractor.stft.conv_imag.weight', imag)):
            stored = state.get(key)
            if stored is not None and (tuple(stored.shape) != tuple(ours.shape)
                                       or float((stored.float() - ours).abs().max()) > 1e-5):
                raise EvarError(f'Weight file {path}: audio_encoder.base.htsat.{key} differs from msclap\'s front end '
                                '(periodic Hann DFT of 1024; Slaney mels for 32 kHz, 64 bands, 50-14000 Hz).')
        load_official(self.swin, state, f'{path} (audio_encoder.base.htsat.)', HTSAT_IGNORED)

    def _build_text(self, state: dict, path) -> None:
        import transformers

        model_id = self.params.text_model or self.spec.text_model
        try:
            config = transformers.AutoConfig.from_pretrained(model_id)
        except (OSError, ValueError, KeyError) as e:
            raise EvarError(f'MS-CLAP {self.version}: cannot read the text model config of {model_id!r} (text_model: '
                            f'a hub id such as {self.spec.text_model} or a local save_pretrained folder). Cause: {e}') \
                from e
        self.text_model_id = model_id
        self.text_base = transformers.AutoModel.from_config(config)
        base = {k: v for k, v in _split(state, 'caption_encoder.base.').items()
                if not any(k.endswith(b) or k == b for b in TEXT_BUFFERS) or k in self.text_base.state_dict()}
        load_strict(self.text_base, base, f'{path} (caption_encoder.base.)')
        self.text_projection = Projection(int(config.hidden_size), self.d_proj)
        load_strict(self.text_projection, _split(state, 'caption_encoder.projection.'), path)
        self.text_base.requires_grad_(False)  # EVAR's fine-tuning trains the audio tower only
        self.text_projection.requires_grad_(False)

    def _load_logit_scale(self, state: dict, path) -> None:
        if 'logit_scale' not in state:
            raise EvarError(f'Weight file {path} does not match MS-CLAP {self.version}: missing logit_scale.')
        with torch.no_grad():
            self.logit_scale.copy_(state['logit_scale'].reshape(()))

    @classmethod
    def weight_paths(cls, params) -> list:
        """The checkpoint (a version name resolved to external/CLAP_weights_<version>.pth)."""
        _, path = resolve_version(params)
        return [Path(str(path)).expanduser()] if path else []

    # --- the contract ----------------------------------------------------------------------------------------------
    def patch_embedding(self) -> nn.Module:
        """The audio tower's stem: CNN14's first block (2022) or the Swin's patch embedding (2023)."""
        return self.cnn14.conv_block1 if self.spec.audio == 'cnn14' else self.swin.audio_encoder.patch_embed

    @property
    def frame_hop_sec(self) -> Optional[float]:
        """long_clip 'chunks': one frame per window, `duration` s apart; otherwise None (one frame per clip)."""
        return float(self.spec.duration) if self.params.long_clip == 'chunks' else None

    @property
    def embedding_dim(self) -> int:
        """The joint space's width (1024 in the publisher's files)."""
        return self.d_proj

    def _windows(self, wave: torch.Tensor) -> list:
        """A clip at 44.1 kHz [n] -> its windows, each [window_samples] (msclap's fill for short ones)."""
        w, n = self.window_samples, wave.shape[0]
        if n <= w:
            return [fill_window(wave, w)]
        if self.params.long_clip == 'random':
            start = random.randrange(n - w)  # msclap's draw (CLAPWrapper.load_audio_into_tensor)
            return [wave[start:start + w]]
        if self.params.long_clip == 'head':
            return [wave[:w]]
        return [fill_window(piece, w) for piece in torch.split(wave, w)]

    def features(self, wav: torch.Tensor, lengths: torch.Tensor):
        """Log-mel [B, 64, T] of each clip's windows concatenated in time (every window has the same frame count:
        690 for 2022's 5 s, 965 for 2023's 7 s), with feat_lengths [B] = frames x windows."""
        windows, counts = [], []
        for i, n in enumerate(lengths.tolist()):
            clip = wav[i:i + 1, :max(1, int(n))]
            if self.params.sample_rate != MODEL_RATE:
                clip = sinc_resample(clip, int(self.params.sample_rate), MODEL_RATE, self._resampler)
            pieces = self._windows(clip[0])
            windows += pieces
            counts.append(len(pieces))
        mels = []
        for start in range(0, len(windows), self.params.chunk_batch):
            mels.append(self._log_mel(torch.stack(windows[start:start + self.params.chunk_batch])))
        mels = torch.cat(mels)  # [windows, 64, T]
        frames = mels.shape[-1]
        out = mels.new_zeros(len(counts), mels.shape[1], frames * max(counts))
        start = 0
        for i, c in enumerate(counts):
            out[i, :, :frames * c] = mels[start:start + c].permute(1, 0, 2).reshape(mels.shape[1], -1)
            start += c
        return out, torch.tensor(counts, device=wav.device) * frames

    def _log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        """Windows [W, samples] -> log-mel in dB [W, 64, frames]."""
        if self.spec.audio == 'cnn14':
            return self.cnn14.logmel(waves)
        power = power_mel(waves, 1024, self.mel_fb, 1024, 320, 'reflect')
        return (10.0 * torch.log10(power.clamp(min=1e-10))).transpose(1, 2)

    def _window_frames(self) -> int:
        return self.window_samples // 320 + 1

    def encode(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> Frames:
        """Frames [B, windows, 1024]: each window's log-mel through the audio encoder and the projection (msclap's
        `get_audio_embeddings` of that window), mask True for each clip's windows."""
        feats = self.augment_input(feats)  # dB log-mel: the network's own BatchNorm standardises it
        t = self._window_frames()
        counts = (feat_lengths // t).tolist()
        windows = torch.cat([feats[i, :, :t * c].reshape(feats.shape[1], c, t).transpose(0, 1)
                             for i, c in enumerate(counts)])  # [W, 64, t]
        outs = [self._audio_vector(windows[s:s + self.params.chunk_batch])
                for s in range(0, windows.shape[0], self.params.chunk_batch)]
        emb = self.audio_projection(torch.cat(outs))
        x = emb.new_zeros(len(counts), max(counts), emb.shape[-1])
        start = 0
        for i, c in enumerate(counts):
            x[i, :c] = emb[start:start + c]
            start += c
        lengths = torch.tensor(counts, device=x.device)
        return Frames(x, lengths_to_mask(lengths, x.shape[1]))

    def _audio_vector(self, mels: torch.Tensor) -> torch.Tensor:
        """Log-mel windows [W, 64, t] -> the audio encoder's embedding [W, audio_dim] (before the projection)."""
        if self.spec.audio == 'cnn14':
            full = torch.full((mels.shape[0],), mels.shape[-1], dtype=torch.long, device=mels.device)
            return self.cnn14(mels, full)[2]
        return swin_tokens(self.swin, mels.transpose(1, 2)).mean(1)  # latent_output

    # --- text --------------------------------------------------------------------------------------------------------
    def _tokens(self, texts: list) -> dict:
        import transformers

        if self._tokenizer is None:
            try:
                tok = transformers.AutoTokenizer.from_pretrained(self.text_model_id)
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise EvarError(f'MS-CLAP {self.version}: cannot load the tokenizer of {self.text_model_id!r} '
                                f'(text_model: a hub id or a folder with its tokenizer files). Cause: {e}') from e
            if self.spec.text_model == 'gpt2':
                tok.add_special_tokens({'pad_token': GPT2_PAD})
            self._tokenizer = tok
        if self.spec.text_model == 'gpt2':
            texts = [t + ' <|endoftext|>' for t in texts]
        # msclap pads to text_len and never truncates (a longer caption is encoded whole; in a batch with shorter
        # ones msclap fails to stack them): pad to the longer of the two, cut only at the model's position limit.
        config = self.text_base.config
        limit = getattr(config, 'max_position_embeddings', None) or config.n_positions
        ids = self._tokenizer(list(texts), truncation=True, max_length=limit)['input_ids']
        longest = max(len(x) for x in ids)
        return self._tokenizer(list(texts), max_length=max(self.spec.text_len, longest), padding='max_length',
                               truncation=True, return_tensors='pt')

    def encode_text(self, texts: list) -> torch.Tensor:
        """Text embeddings [len(texts), 1024] in the joint space, L2-normalised (msclap's `get_text_embeddings`
        then normalised), on the model's device.

        Raises:
            EvarError: the tokenizer cannot be loaded from `text_model`.
        """
        device = self.audio_projection.linear1.weight.device
        tokens = {k: v.to(device) for k, v in self._tokens(texts).items()}
        if self.spec.text_model == 'gpt2':
            hidden = self.text_base(input_ids=tokens['input_ids'], attention_mask=tokens['attention_mask'])[0]
            last = (tokens['input_ids'] != self._tokenizer.pad_token_id).sum(-1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=device), last]
        else:
            pooled = self.text_base(**{k: tokens[k] for k in ('input_ids', 'token_type_ids', 'attention_mask')
                                       if k in tokens})[0][:, 0]
        return F.normalize(self.text_projection(pooled).float(), dim=-1)
