"""Hugging Face transformers audio encoders: wav2vec 2.0, HuBERT, WavLM, data2vec-audio (and other models fed raw
waveforms through a convolutional feature encoder), Whisper's encoder, AST, and the audio tower of CLAP (`ClapModel`).

The model and its own feature extractor are loaded with `AutoModel` / `AutoFeatureExtractor.from_pretrained(model_id)`
(a hub id or a local `save_pretrained` folder), so the model's own normalisation and mel settings are used.
transformers is imported only when this AR is built (`pip install 'evar[hf]'`).

Every clip is cut into pieces of at most `chunk_sec` (Whisper: its 30 s window; AST: its ~10 s input by default),
each piece goes through the model's front end alone, and only the frames that come from real audio are kept, then
concatenated per clip. The front ends are the feature extractors' computations written in torch with their settings
(read from the loaded feature extractor), so gradients reach the backbone and nothing leaves the device:
- waveform models: zero mean and unit variance per piece when `do_normalize` (statistics in float64; transformers
  takes them in float32 numpy: embeddings agree within float32 rounding);
- Whisper: the feature extractor's own torch log-mel (same operations, bit-identical), on the piece zero-padded to
  30 s;
- AST: the Kaldi fbank of `evar.frontend.KaldiFbank` (torchaudio's, as transformers uses when torchaudio is
  installed), zero-padded or cut to `max_length` frames, then (x - mean) / (2 std);
- CLAP: the piece repeated and zero-padded to 10 s as `padding` says, then the Slaney log-mel in float64 as
  transformers' numpy `spectrogram` (rounded through complex64 as it does).
Kept frames:
- waveform models: valid frames from the conv encoder's `_get_feat_extract_output_lengths`; the attention mask is
  passed when the conv encoder uses layer norm; models whose outputs padding would change even with the mask (group
  norm over time in wav2vec2-base / HuBERT-base; data2vec-audio's stacked positional convolutions) run pieces of
  different lengths in separate batches instead of padding them.
- Whisper: input is always padded to 30 s of log-mel; 50 Hz output frames, valid = ceil(samples / 320).
- AST: patch tokens (the [CLS]/distillation tokens are dropped) whose time patch starts on a real fbank frame.
  `output: cls_dist` (EVAR's AR_AST, which runs the original github.com/YuanGongND/ast code): one embedding per
  piece, ([CLS] + distillation token) / 2 after the final LayerNorm, of the piece's own fbank frames (not padded to
  `max_length`): the position embeddings are cut from the middle of the time grid for a shorter input, or
  stretched (bilinear) for a longer one, as the original ASTModel does for an `input_tdim` other than the
  checkpoint's. With `norm_stats` (EVAR: the task's training-split fbank mean and std) instead of the feature
  extractor's AudioSet mean / std, a clip of the task's unit length gets EVAR's embedding.
- CLAP: one embedding per piece of at most 10 s (the model's input), which its feature extractor fills by repeating
  the clip ('repeatpad'), as CLAP was trained and as LAION's inference does; `output: audio_embeds` (default in our
  CLAP YAMLs, as EVAR's laionclap) is the projection into the joint audio-text space, L2-normalised; `hidden_states`
  the audio tower's pooled output before the projection.
So a clip's embedding does not depend on what else is in the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from ..errors import EvarError
from ..frontend import KaldiFbank
from .base import AudioRepr, Frames, lengths_to_mask, select_layers, selected_width

WAVEFORM_TYPES = ('wav2vec2', 'hubert', 'wavlm', 'data2vec-audio', 'wav2vec2-conformer', 'unispeech', 'unispeech-sat',
                  'sew', 'sew-d', 'mert_model')
PADDING_UNSAFE = ('data2vec-audio',)  # run only equal-length pieces together
OUTPUTS = ('hidden_states', 'conv_features', 'ctc_logits', 'audio_embeds', 'cls_dist')


@dataclass(frozen=True)
class HFParams:
    """YAML keys of `hf`.

    Keys:
        model_id: a hub id (e.g. facebook/hubert-base-ls960) or a local save_pretrained folder.
        sample_rate: Hz; must equal the feature extractor's sampling_rate.
        output_layers: hidden-state index (0 = the input embeddings, -1 the last), a list (concatenated), or 'all'.
        layer_average: with several output_layers, average them instead of concatenating.
        temporal_pooling_type: 'mean', 'max' or 'mean_max'.
        feature_d: not used.
        trust_remote_code: allow models whose code lives on the hub (e.g. m-a-p/MERT-v1-95M).
        chunk_sec: seconds per piece run alone (None: the model's own limit, Whisper 30 s, AST ~10 s, CLAP 10 s;
            waveform models unlimited).
        output: 'hidden_states'; waveform models also 'conv_features' (the conv encoder's output) or
            'ctc_logits' (a CTC fine-tuned checkpoint); CLAP also 'audio_embeds' (the joint-space projection); AST
            also 'cls_dist' (([CLS] + distillation) / 2 of each piece's unpadded input, as EVAR's AR_AST; needs
            output_layers -1).
        norm_stats: AST only: [mean, std] of the Kaldi fbank (natural-log mel energies) replacing the feature
            extractor's (AudioSet's -4.27, 4.57): the input is (fbank - mean) / (2 std); or 'task': those of the
            task's training split, as EVAR's AR_AST (the embedding code gathers them through `stat_sums`).
        feature_extractor_id: where preprocessor_config.json comes from when not model_id's (EVAR preprocesses
            HuBERT and WavLM with facebook/wav2vec2-base-960h's).
    """
    model_id: Optional[str] = None  # hub id (e.g. facebook/hubert-base-ls960) or a local save_pretrained folder
    sample_rate: int = 16000
    output_layers: Any = -1  # hidden-state index, list of indices (concatenated), or 'all'; 0 = input embeddings
    layer_average: bool = False  # average the chosen layers instead of concatenating them
    temporal_pooling_type: str = 'mean'
    feature_d: Optional[int] = None  # informational
    trust_remote_code: bool = False  # models whose code lives on the hub (e.g. m-a-p/MERT-v1-95M)
    chunk_sec: Optional[float] = None  # None: the model's own input limit (Whisper 30 s, AST ~10 s), else unlimited
    # Waveform models only: 'conv_features' = conv feature encoder output (EVAR's AR_Wav2Vec2Feature),
    # 'ctc_logits' = logits of a CTC fine-tuned checkpoint (EVAR's AR_Wav2Vec2Logit).
    # CLAP only: 'audio_embeds' = the audio embedding projected into the joint audio-text space.
    output: str = 'hidden_states'
    norm_stats: Any = None  # AST: [mean, std] of the fbank, or 'task', instead of the feature extractor's
    # Where the feature extractor (preprocessor_config.json) comes from when not model_id's own; EVAR preprocesses
    # HuBERT and WavLM with facebook/wav2vec2-base-960h's.
    feature_extractor_id: Optional[str] = None


def _resolve(model_id: str, what: str) -> str:
    """A local folder (checked) or a hub id; a path-like id that does not exist is an error saying what to put."""
    local = Path(model_id).expanduser()
    if local.exists():
        if not (local / 'config.json').is_file() and not (local / 'preprocessor_config.json').is_file():
            raise EvarError(f'audio_repr hf: {what} folder {local} has no config.json; expected a folder written by '
                            'save_pretrained (config.json, weights, preprocessor_config.json).')
        return str(local)
    if model_id.startswith(('/', '.', '~')) or model_id.count('/') > 1 or '\\' in model_id:
        raise EvarError(f'audio_repr hf: {what} folder {local} does not exist. Expected a local folder written by '
                        'save_pretrained (config.json, model weights, preprocessor_config.json) or a hub id such as '
                        'facebook/hubert-base-ls960.')
    return model_id


class HFAudio(AudioRepr):
    """Hugging Face transformers encoders (wav2vec 2.0 family, Whisper's encoder, AST, CLAP's audio tower) with their
    own feature extractors' settings: waves [B, N] float32 at sample_rate Hz -> Frames [B, T, D], each clip cut
    into pieces of at most chunk_sec run through the front end alone, frames from real audio only (see the module
    docstring for each family's frames).

    Raises:
        EvarError: transformers missing, model_id unset or not found, an unsupported model type or output, a
            sample_rate other than the feature extractor's, or fused CLAP settings (at construction).
    """
    Params = HFParams

    @classmethod
    def weight_paths(cls, params) -> list:
        """Every file of the model's (and feature extractor's) folder: a local save_pretrained folder, or the hub
        snapshot (fetched into the Hugging Face cache, as loading would), so changed weights change the cache key."""
        files = []
        for ident in dict.fromkeys(i for i in (params.model_id, params.feature_extractor_id) if i):
            folder = Path(_resolve(ident, 'model')).expanduser()
            if not folder.is_dir():
                from huggingface_hub import snapshot_download

                folder = Path(snapshot_download(ident))
            files += sorted(f for f in folder.rglob('*') if f.is_file() and '.cache' not in f.parts)
        return files

    def __init__(self, params: HFParams):
        super().__init__(params)
        try:
            import transformers
        except ImportError as e:
            raise EvarError(f'audio_repr hf needs transformers: pip install "transformers>=4.40" ({e}).') from e
        if not params.model_id:
            raise EvarError('audio_repr hf: model_id is not set. Set it to a Hugging Face hub id (e.g. '
                            'facebook/hubert-base-ls960) or a local folder written by save_pretrained.')
        if params.output not in OUTPUTS:
            raise EvarError(f'audio_repr hf: output must be one of {list(OUTPUTS)}, got {params.output!r}.')
        model_id = _resolve(params.model_id, 'model')
        fe_id = _resolve(params.feature_extractor_id, 'feature extractor') if params.feature_extractor_id else model_id
        remote = {'trust_remote_code': True} if params.trust_remote_code else {}
        try:
            config = transformers.AutoConfig.from_pretrained(model_id, **remote)
            self.feature_extractor = transformers.AutoFeatureExtractor.from_pretrained(fe_id, **remote)
            if params.output == 'ctc_logits':
                model = transformers.AutoModelForCTC.from_pretrained(model_id, **remote)
            else:
                model = transformers.AutoModel.from_pretrained(model_id, **remote)
        except (OSError, ValueError, KeyError) as e:
            where = '' if Path(model_id).exists() else (
                f' It is published at https://huggingface.co/{model_id}; without hub access, copy that repository '
                f'(snapshot) to a folder such as external/{model_id.split("/")[-1]} and set model_id to the folder.')
            raise EvarError(f'audio_repr hf: cannot load {model_id!r} (expected a hub id or a save_pretrained folder '
                            f'with config.json, weights and preprocessor_config.json).{where} Cause: {e}') from e
        self._setup(config, model, model_id)
        if params.output in ('conv_features', 'ctc_logits') and self.family != 'waveform':
            raise EvarError(f'audio_repr hf: output={params.output!r} is only for waveform models (wav2vec2 family).')
        if params.output == 'audio_embeds' and self.family != 'clap':
            raise EvarError("audio_repr hf: output='audio_embeds' is only for CLAP models.")
        if params.output == 'cls_dist' and (self.family != 'ast' or params.output_layers not in (-1, [-1])):
            raise EvarError("audio_repr hf: output='cls_dist' is only for AST models, with output_layers -1 (the "
                            f'final LayerNorm); got model type {self.model_type!r}, output_layers '
                            f'{params.output_layers!r}.')
        stats = params.norm_stats
        if stats is not None and (self.family != 'ast' or not (stats == 'task' or (
                isinstance(stats, (list, tuple)) and len(stats) == 2 and float(stats[1]) > 0))):
            raise EvarError(f"audio_repr hf: norm_stats must be [mean, std > 0] or 'task' and is only for AST models; "
                            f'got {stats!r} for model type {self.model_type!r}.')
        self.needs_norm_stats = stats == 'task'  # the task's training-split statistics, as EVAR's AR_AST
        self.reset_norm_stats()

    @classmethod
    def uses_task_stats(cls, params) -> bool:
        """AST with `norm_stats: task` takes the task's training-split statistics."""
        return getattr(params, 'norm_stats', None) == 'task'

    def fixed_norm_stats(self) -> Optional[tuple]:
        """AST's `norm_stats` [mean, std] when given as numbers; None otherwise (the feature extractor's, or the
        task's with 'task')."""
        stats = getattr(self.params, 'norm_stats', None)
        return (float(stats[0]), float(stats[1])) if isinstance(stats, (list, tuple)) else None

    def stat_sums(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> torch.Tensor:
        """AST: [3] float64 (sum, sum of squares, count) of the Kaldi fbank values of each clip's real frames (the
        whole clip's fbank, as EVAR takes it of the unit-sized clip); `feats` are the waves [B, N] that `features`
        passes through and `feat_lengths` their samples."""
        fbank, counts = self.fbank(feats.float(), feat_lengths)
        return super().stat_sums(fbank, counts)

    def _setup(self, config, model, model_id: str) -> None:
        """Family, sizes and the eval-mode backbone of a loaded model; `self.feature_extractor` must be set. Also used
        by models built in memory (whisper_ct2)."""
        self.model_type = getattr(config, 'model_type', '')
        if self.model_type == 'whisper':
            self.family = 'whisper'
            self.augment_point = 'spectrogram'  # only Whisper's input is a log-mel; the others take waves
            model = model.get_encoder()
        elif self.model_type == 'audio-spectrogram-transformer':
            self.family = 'ast'
        elif self.model_type == 'clap':
            self.family = 'clap'
            # The text tower is kept outside the registered modules: fine-tuning, layer decay and parameter counts
            # see the audio tower only; `encode_text` moves it to the audio tower's device when it runs.
            self._clap_text = (model.text_model.eval(), model.text_projection.eval(), model_id)
            self._tokenizer = None
            self.encode_text = self._encode_clap_text  # the audio-text contract (evar.models.audio_text): CLAP only
            model.text_model = model.text_projection = None
        elif hasattr(model, '_get_feat_extract_output_lengths'):
            self.family = 'waveform'
        else:
            raise EvarError(f'audio_repr hf: model type {self.model_type!r} of {model_id} is not supported. Supported: '
                            f'{", ".join(WAVEFORM_TYPES)} (raw-waveform encoders), whisper, '
                            'audio-spectrogram-transformer, clap.')
        fe_rate = getattr(self.feature_extractor, 'sampling_rate', None)
        if fe_rate is not None and int(fe_rate) != int(self.params.sample_rate):
            raise EvarError(f'audio_repr hf: {model_id} expects {fe_rate} Hz audio; set sample_rate: {fe_rate}.')
        self.backbone = model.eval()
        self.config = config
        # Group norm over time in the conv encoder (wav2vec2-base, HuBERT-base) is not padding-safe, nor is
        # data2vec-audio's stack of positional convolutions (padding re-enters after the first one).
        self.batch_with_mask = (getattr(config, 'feat_extract_norm', 'layer') != 'group'
                                and self.model_type not in PADDING_UNSAFE)
        self.chunk_samples = self._chunk_samples()
        self.min_samples = self._min_samples()
        self._setup_front_end()

    def _setup_front_end(self) -> None:
        """The feature extractor's constants as buffers (they follow the module's device)."""
        fe = self.feature_extractor
        if self.family == 'whisper':
            self.register_buffer('mel_filters', torch.from_numpy(fe.mel_filters).float(), persistent=False)
            self.register_buffer('stft_window', torch.hann_window(int(fe.n_fft)), persistent=False)
        elif self.family == 'ast':
            self.fbank = KaldiFbank(self.sample_rate, int(fe.num_mel_bins), window='hanning')
        elif self.family == 'clap':
            if fe.truncation != 'rand_trunc' or fe.padding not in ('repeatpad', 'repeat', 'pad'):
                raise EvarError(f'audio_repr hf: CLAP feature extractor settings truncation={fe.truncation!r}, '
                                f'padding={fe.padding!r} are not supported (fused CLAP models treat a random clip of '
                                "each batch as longer); supported: truncation 'rand_trunc' with padding 'repeatpad', "
                                "'repeat' or 'pad'.")
            if self.chunk_samples > int(fe.nb_max_samples):  # a longer piece would be cut: audio lost without a word
                raise EvarError(f'audio_repr hf: chunk_sec {self.params.chunk_sec} is longer than the CLAP input of '
                                f'{int(fe.nb_max_samples) / self.sample_rate:g} s; set chunk_sec to at most that '
                                '(or leave it unset).')
            self.register_buffer('mel_filters', torch.from_numpy(fe.mel_filters_slaney), persistent=False)
            self.register_buffer('stft_window', torch.hann_window(int(fe.fft_window_size), dtype=torch.float64),
                                 persistent=False)

    @property
    def _cls_dist(self) -> bool:
        """AST's `output: cls_dist` (whisper_ct2's Params have no `output`)."""
        return getattr(self.params, 'output', None) == 'cls_dist'

    def patch_embedding(self) -> torch.nn.Module:
        """What turns the input into tokens: the convolutional feature encoder of waveform models (what
        transformers' `freeze_feature_encoder` freezes), AST's and CLAP's patch embeddings, Whisper's two input
        convolutions."""
        if self.family == 'whisper':
            return torch.nn.ModuleList([self.backbone.conv1, self.backbone.conv2])
        suffix = {'waveform': 'feature_extractor', 'ast': 'patch_embeddings', 'clap': 'patch_embed'}[self.family]
        return next(m for name, m in self.backbone.named_modules() if name.endswith(suffix))

    @property
    def frame_hop_sec(self) -> Optional[float]:
        """Waveform models: the conv encoder's total stride; Whisper: 2 mel hops (20 ms); CLAP: one embedding per
        piece, as AST's `cls_dist`. AST: None, its frames are patch tokens of a (frequency, time) grid, not time
        steps."""
        if self.family == 'waveform':
            return math.prod(self.config.conv_stride) / self.sample_rate
        if self.family == 'whisper':
            return 2 * int(self.feature_extractor.hop_length) / self.sample_rate
        if self.family == 'clap' or self._cls_dist:  # one embedding per piece
            return self.chunk_samples / self.sample_rate
        return None

    @property
    def embedding_dim(self) -> int:
        """From the model's config: the width of each hidden state (layer 0 = input embeddings), the conv encoder's
        last width, the CTC vocabulary, or CLAP's audio tower / joint-space projection."""
        c = self.config
        if self._cls_dist:
            return c.hidden_size
        if self.family == 'whisper':  # whisper_ct2's Params have no `output`
            widths = [c.d_model] * (c.encoder_layers + 1)
        elif self.family == 'clap':
            a = c.audio_config
            widths = [c.projection_dim if self.params.output == 'audio_embeds'
                      else a.patch_embeds_hidden_size * 2 ** (len(a.depths) - 1)]
        elif self.params.output == 'conv_features':
            widths = [c.conv_dim[-1]]
        elif self.params.output == 'ctc_logits':
            widths = [c.vocab_size]
        else:
            widths = [c.hidden_size] * (c.num_hidden_layers + 1)
        return selected_width(widths, self.params.output_layers, self.params.layer_average)
    # --- sizes -----------------------------------------------------------------------------------------------------
    def _chunk_samples(self) -> Optional[int]:
        if self.params.chunk_sec:
            return max(1, int(round(self.params.chunk_sec * self.sample_rate)))
        fe = self.feature_extractor
        if self.family == 'whisper':
            return int(fe.n_samples)
        if self.family == 'ast':  # kaldi fbank: 25 ms window, 10 ms shift -> max_length frames
            return int(fe.max_length - 1) * self._ast_shift() + self._ast_window()
        if self.family == 'clap':
            return int(fe.nb_max_samples)
        return None

    def _ast_window(self) -> int:
        return int(round(0.025 * self.sample_rate))

    def _ast_shift(self) -> int:
        return int(round(0.010 * self.sample_rate))

    def _min_samples(self) -> int:
        if self.family == 'waveform':  # receptive field of the conv encoder: at least one frame
            n = 1
            for kernel, stride in zip(self.config.conv_kernel, self.config.conv_stride):
                n = (n - 1) * stride + kernel
            return n
        if self.family == 'ast':
            return self._ast_window()
        return 1

    def _valid_frames(self, n: int) -> int:
        if self.family == 'waveform':
            return int(self.backbone._get_feat_extract_output_lengths(torch.tensor([n]))[0])
        if self.family == 'clap':
            return 1
        if self.family == 'whisper':
            hop = int(self.feature_extractor.hop_length)
            return min(math.ceil(n / (2 * hop)), int(self.config.max_source_positions))
        # AST: fbank frames, then the time index of every patch token that starts on a real frame
        return 1 + (n - self._ast_window()) // self._ast_shift()

    # --- front ends (torch versions of the feature extractors' computations) ----------------------------------------
    def _waveform_inputs(self, pieces: list) -> tuple:
        """Pieces [N_i] -> (input_values [G, max N_i] padded with padding_value, attention_mask [G, max N_i])."""
        fe = self.feature_extractor
        lengths = torch.tensor([len(x) for x in pieces], device=pieces[0].device)
        x = torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True, padding_value=float(fe.padding_value))
        mask = lengths_to_mask(lengths, x.shape[1])
        if fe.do_normalize:  # per piece over its own samples (statistics in float64), padding set to padding_value
            n = lengths[:, None].double()
            valid = mask.double()
            mean = (x.double() * valid).sum(1, keepdim=True) / n
            var = ((x.double() - mean).square() * valid).sum(1, keepdim=True) / n
            x = (x - mean.float()) / (var.float() + 1e-7).sqrt()
            x = x.masked_fill(~mask, float(fe.padding_value))
        return x, mask.long()

    def _whisper_inputs(self, pieces: list) -> torch.Tensor:
        """Pieces -> log-mel [G, n_mels, 3000] of each zero-padded to 30 s (WhisperFeatureExtractor's torch path)."""
        fe = self.feature_extractor
        n = int(fe.n_samples)
        wave = pieces[0].new_zeros(len(pieces), n)
        for i, x in enumerate(pieces):
            wave[i, :min(len(x), n)] = x[:n]
        stft = torch.stft(wave, int(fe.n_fft), int(fe.hop_length), window=self.stft_window, return_complex=True)
        magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
        log_spec = torch.clamp(self.mel_filters.T @ magnitudes, min=1e-10).log10()
        peak = log_spec.max(dim=2, keepdim=True)[0].max(dim=1, keepdim=True)[0]
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0

    def _ast_inputs(self, pieces: list, width: Optional[int] = None) -> torch.Tensor:
        """Pieces -> normalised Kaldi fbank [G, width, num_mel_bins] (ASTFeatureExtractor's steps), zero-padded or
        cut to `width` frames (None: `max_length`), standardised with `norm_stats` when set.

        Raises:
            EvarError: norm_stats 'task' and the statistics are not set."""
        fe = self.feature_extractor
        lengths = torch.tensor([len(x) for x in pieces], device=pieces[0].device)
        fbank, counts = self.fbank(torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True), lengths)
        fbank = fbank.transpose(1, 2)  # [G, T, mels], zero past each piece's frames (as transformers pads)
        width = int(fe.max_length) if width is None else width
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, max(0, width - fbank.shape[1])))[:, :width]
        if self.norm_mean is not None:  # norm_stats: given, or the task's
            return (fbank - self.norm_mean) / (self.norm_std * 2)
        if self.needs_norm_stats:
            raise EvarError("audio_repr hf: norm_stats 'task': the training split's statistics are not set yet.")
        return (fbank - fe.mean) / (fe.std * 2) if fe.do_normalize else fbank

    def _ast_cls_dist(self, pieces: list) -> list:
        """Pieces of one length -> ([CLS] + distillation) / 2 after the final LayerNorm, [1, D] each, of their
        unpadded fbank (at least one patch's frames): the position embeddings of the patch grid are cut from the
        middle of the checkpoint's time extent for a shorter input and stretched bilinearly for a longer one (what
        the original AST's ASTModel does when built for another `input_tdim`; github.com/YuanGongND/ast)."""
        c, dtype = self.config, self._device_dtype()[1]
        frames = max(c.patch_size, self._valid_frames(max(len(pieces[0]), self.min_samples)))
        x = self._ast_inputs(pieces, frames).to(dtype)
        emb = self.backbone.embeddings
        patches = emb.patch_embeddings(x)  # [G, f * t, D], frequency-major
        f_out = (c.num_mel_bins - c.patch_size) // c.frequency_stride + 1
        t_full = (c.max_length - c.patch_size) // c.time_stride + 1
        t_out = (frames - c.patch_size) // c.time_stride + 1
        grid = emb.position_embeddings[:, 2:].reshape(1, f_out, t_full, -1).permute(0, 3, 1, 2)  # [1, D, f, t]
        if t_out < t_full:
            start = t_full // 2 - t_out // 2
            grid = grid[..., start:start + t_out]
        elif t_out > t_full:
            grid = torch.nn.functional.interpolate(grid, size=(f_out, t_out), mode='bilinear')
        position = torch.cat([emb.position_embeddings[:, :2], grid.flatten(2).transpose(1, 2)], dim=1)
        g = x.shape[0]
        h = torch.cat([emb.cls_token.expand(g, -1, -1), emb.distillation_token.expand(g, -1, -1), patches], dim=1)
        h = emb.dropout(h + position)
        layers = getattr(self.backbone, 'layers', None)  # transformers 5; 4.x: encoder.layer
        for layer in (layers if layers is not None else self.backbone.encoder.layer):
            out = layer(h)
            h = out[0] if isinstance(out, tuple) else out
        h = self.backbone.layernorm(h)
        pooled = (h[:, 0] + h[:, 1]) / 2
        return [pooled[i:i + 1] for i in range(g)]

    def _clap_inputs(self, pieces: list) -> torch.Tensor:
        """Pieces -> log-mel [G, 1, frames, n_mels] of each filled to 10 s by `padding` (ClapFeatureExtractor's
        'rand_trunc' path: a piece is never longer than 10 s here)."""
        fe = self.feature_extractor
        n = int(fe.nb_max_samples)
        waves = []
        for x in pieces:
            if len(x) < n and fe.padding == 'repeat':
                x = x.repeat(n // len(x) + 1)[:n]
            elif len(x) < n and fe.padding == 'repeatpad':
                x = x.repeat(n // len(x))
            waves.append(torch.nn.functional.pad(x, (0, n - len(x))))
        frame, hop = int(fe.fft_window_size), int(fe.hop_length)
        wave = torch.nn.functional.pad(torch.stack(waves).double()[:, None], (frame // 2, frame // 2), mode='reflect')
        frames = wave[:, 0].unfold(-1, frame, hop) * self.stft_window  # [G, T, frame], float64 as numpy's
        spec = torch.fft.rfft(frames).to(torch.complex64).to(torch.complex128)  # transformers stores complex64
        power = spec.abs() ** 2
        mel = torch.clamp(power @ self.mel_filters, min=1e-10)
        return (10.0 * torch.log10(mel)).float()[:, None]  # dB re 1.0, floor 1e-10 (-100 dB)

    # --- the model -------------------------------------------------------------------------------------------------
    def _device_dtype(self):
        p = next(self.backbone.parameters())
        return p.device, p.dtype

    def _run(self, pieces: list) -> list:
        """Frame embeddings [T_i, D] of the real audio of each piece (1-D waves) run as one batch."""
        device, dtype = self._device_dtype()
        lens = [len(x) for x in pieces]
        pieces = [torch.nn.functional.pad(x, (0, max(0, self.min_samples - len(x)))).to(device) for x in pieces]
        if self.family == 'waveform':
            x, attention = self._waveform_inputs(pieces)
            x = x.to(dtype)
            mask = attention if self.batch_with_mask else None
            if self.params.output == 'conv_features':
                layers = [self.backbone.feature_extractor(x).transpose(1, 2)]
            elif self.params.output == 'ctc_logits':
                layers = [self.backbone(x, attention_mask=mask).logits]
            else:
                layers = list(self.backbone(x, attention_mask=mask, output_hidden_states=True).hidden_states)
            emb = select_layers(layers, self.params.output_layers, self.params.layer_average)
            valid = [max(1, self._valid_frames(max(n, self.min_samples))) for n in lens]
            return [emb[i, :v] for i, v in enumerate(valid)]
        if self.family == 'whisper':
            x = self.augment_input(self._whisper_inputs(pieces).to(dtype))  # Whisper's scaled log-mel [B, 80, T]
            layers = list(self.backbone(x, output_hidden_states=True).hidden_states)
            emb = select_layers(layers, self.params.output_layers, self.params.layer_average)
            return [emb[i, :max(1, self._valid_frames(n))] for i, n in enumerate(lens)]
        if self.family == 'clap':
            return self._run_clap(self._clap_inputs(pieces).to(dtype))
        if self._cls_dist:
            return self._ast_cls_dist(pieces)
        # AST
        x = self._ast_inputs(pieces).to(dtype)
        layers = list(self.backbone(x, output_hidden_states=True).hidden_states)
        emb = select_layers(layers, self.params.output_layers, self.params.layer_average)[:, 2:]  # patch tokens
        c = self.config
        f_out = (c.num_mel_bins - 16) // c.frequency_stride + 1
        t_out = (c.max_length - 16) // c.time_stride + 1
        if f_out * t_out != emb.shape[1]:
            raise EvarError(f'AST: expected {f_out}x{t_out} patch tokens, got {emb.shape[1]}.')
        t_index = torch.arange(t_out, device=emb.device).repeat(f_out)  # tokens are (frequency, time), time fastest
        out = []
        for i, n in enumerate(lens):
            frames = self._valid_frames(max(n, self.min_samples))
            keep = t_index * c.time_stride < max(frames, 1)
            out.append(emb[i, keep])
        return out

    def _run_clap(self, x: torch.Tensor) -> list:
        """Log-mel inputs [G, 1, frames, n_mels] -> one embedding [1, D] per piece."""
        is_longer = torch.zeros(x.shape[0], 1, dtype=torch.bool, device=x.device)  # no piece exceeds 10 s
        if self.params.output == 'audio_embeds':
            out = self.backbone.get_audio_features(input_features=x, is_longer=is_longer)
            emb = out if torch.is_tensor(out) else out.pooler_output  # transformers 5 returns a model output
            emb = torch.nn.functional.normalize(emb, dim=-1)  # unit length, as LAION's inference (and EVAR) use it
        else:
            emb = self.backbone.audio_model(input_features=x, is_longer=is_longer).pooler_output
        emb = select_layers([emb], self.params.output_layers, self.params.layer_average)
        return [emb[i:i + 1] for i in range(x.shape[0])]

    def _encode_clap_text(self, texts: list) -> torch.Tensor:
        """CLAP's text embeddings [len(texts), projection_dim], L2-normalised in the joint space of the
        `output: audio_embeds` clip embeddings (the audio-text contract, evar.models.audio_text), on the audio
        tower's device. The model folder's own tokenizer (RoBERTa's for LAION-CLAP) pads and truncates.

        Raises:
            EvarError: the model folder has no tokenizer, or `output` is not audio_embeds (no joint space).
        """
        text_model, projection, model_id = self._clap_text
        if self.params.output != 'audio_embeds':
            raise EvarError(f'audio_repr hf: CLAP text embeddings share a space only with output: audio_embeds, not '
                            f'{self.params.output!r}; set output: audio_embeds for zero-shot or retrieval.')
        if self._tokenizer is None:
            import transformers

            try:
                self._tokenizer = transformers.AutoTokenizer.from_pretrained(model_id)
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise EvarError(f'audio_repr hf: cannot load the tokenizer of {model_id!r} (expected its tokenizer '
                                'files, e.g. tokenizer.json or vocab.json + merges.txt as in laion/clap-htsat-unfused, '
                                f'beside config.json). Cause: {e}') from e
        device, dtype = self._device_dtype()
        text_model.to(device=device, dtype=dtype)
        projection.to(device=device, dtype=dtype)
        tokens = self._tokenizer(list(texts), padding=True, truncation=True, return_tensors='pt').to(device)
        pooled = text_model(input_ids=tokens['input_ids'], attention_mask=tokens['attention_mask']).pooler_output
        return torch.nn.functional.normalize(projection(pooled).float(), dim=-1)

    def _groups(self, lens: list) -> list:
        """Indices of pieces run together: all at once, or equal lengths together when padding is unsafe or the
        input is each piece's own length (AST's `cls_dist`)."""
        by_length = (self.family == 'waveform' and not self.batch_with_mask) or self._cls_dist
        if not by_length:
            return [list(range(len(lens)))]
        by_len = {}
        for k, n in enumerate(lens):
            by_len.setdefault(n, []).append(k)
        return list(by_len.values())

    def encode(self, wav: torch.Tensor, lengths: torch.Tensor) -> Frames:
        """Waves [B, N] (the base `features` passes them through) -> frames of each clip's pieces, concatenated."""
        lengths = [max(1, int(n)) for n in lengths.tolist()]
        pieces = []  # (clip, start, end)
        for i, n in enumerate(lengths):
            step = self.chunk_samples or n
            pieces += [(i, s, min(n, s + step)) for s in range(0, n, step)]
        waves = [wav[i, s:e].float() for i, s, e in pieces]
        frames = [None] * len(pieces)
        for group in self._groups([len(x) for x in waves]):
            for k, f in zip(group, self._run([waves[k] for k in group])):
                frames[k] = f
        per_clip = [[] for _ in lengths]
        for (i, _, _), f in zip(pieces, frames):
            per_clip[i].append(f)
        clips = [torch.cat(p) for p in per_clip]
        counts = torch.tensor([len(c) for c in clips])
        x = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True).to(wav.device)
        return Frames(x.float(), lengths_to_mask(counts.to(wav.device), x.shape[1]))
