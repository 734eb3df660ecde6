"""Tiny random MS-CLAP checkpoints in the publisher's layout (`{'model': state}` with msclap's key names:
audio_encoder.base.* / audio_encoder.projection.* / caption_encoder.base.* / caption_encoder.projection.* /
logit_scale) and tiny local text models (config + tokenizer saved with save_pretrained), for the tests and
benchmarks/parity_msclap.py. Weights are random (seeded): nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

CNN14_TINY = (4, 8, 8, 16, 16, 24)  # conv block widths (official: 64 ... 2048)
SWIN_TINY = dict(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), swin_window=8)  # HTS-AT geometry kept
TEXT_TINY = dict(hidden=16, layers=1, heads=2)
WORDS = " abcdefghijklmnopqrstuvwxyz0123456789'-,."


def write_bert_folder(folder: Path, hidden: int = 16, layers: int = 1, heads: int = 2,
                      max_positions: int = 512) -> Path:
    """A BERT config (feed-forward width 2 * hidden) and a character WordPiece tokenizer ([PAD]=0, [UNK], [CLS],
    [SEP], [MASK], then a-z, 0-9 and their '##' continuations), as bert-base-uncased's folder would hold them."""
    import tokenizers
    import transformers
    from tokenizers import models, normalizers, pre_tokenizers, processors

    chars = [c for c in WORDS if c != ' ']
    vocab = {t: i for i, t in enumerate(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + chars
                                        + ['##' + c for c in chars])}
    tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token='[UNK]'))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single='[CLS] $A [SEP]', special_tokens=[
        ('[CLS]', 2), ('[SEP]', 3)])
    folder.mkdir(parents=True, exist_ok=True)
    transformers.BertTokenizerFast(tokenizer_object=tok, unk_token='[UNK]', pad_token='[PAD]', cls_token='[CLS]',
                                   sep_token='[SEP]', mask_token='[MASK]').save_pretrained(folder)
    transformers.BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=2 * hidden,
                            max_position_embeddings=max_positions).save_pretrained(folder)
    return folder


def write_gpt2_folder(folder: Path, hidden: int = 16, layers: int = 1, heads: int = 2) -> Path:
    """A GPT-2 config and a byte-level BPE tokenizer without merges (one token per byte; '!' is id 0 as in GPT-2's
    vocabulary, '<|endoftext|>' the last id), as gpt2's folder would hold them."""
    import tokenizers
    import transformers
    from tokenizers import decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda c: (c != '!', c))
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab['<|endoftext|>'] = len(vocab)
    tok = tokenizers.Tokenizer(models.BPE(vocab, [], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(['<|endoftext|>'])
    folder.mkdir(parents=True, exist_ok=True)
    transformers.GPT2TokenizerFast(tokenizer_object=tok, bos_token='<|endoftext|>', eos_token='<|endoftext|>',
                                   unk_token='<|endoftext|>').save_pretrained(folder)
    transformers.GPT2Config(vocab_size=len(vocab), n_positions=1024, n_embd=hidden, n_layer=layers, n_head=heads,
                            bos_token_id=len(vocab) - 1, eos_token_id=len(vocab) - 1).save_pretrained(folder)
    return folder


def _projection(prefix: str, d_in: int, d_out: int) -> dict:
    return {f'{prefix}linear1.weight': torch.randn(d_out, d_in) / d_in ** 0.5,
            f'{prefix}linear2.weight': torch.randn(d_out, d_out) / d_out ** 0.5,
            f'{prefix}layer_norm.weight': 1 + 0.1 * torch.randn(d_out),
            f'{prefix}layer_norm.bias': 0.1 * torch.randn(d_out)}


def audio_state(version: str, audio_dim: int, channels=CNN14_TINY, swin: dict = SWIN_TINY) -> dict:
    """Random audio encoder tensors under msclap's names (audio_encoder.base.*), with the official extras the
    loader must accept (torchlibrosa's front-end tensors, the AudioSet classifier, Swin attention masks)."""
    from evar.frontend import slaney_mel_filterbank
    from evar.models.htsat import build_swin, to_official_state
    from evar.models.panns import CNN14Params, Cnn14Net, dft_kernels

    if version == '2022':
        net = Cnn14Net(CNN14Params(sample_rate=44100, n_fft=1024, window_size=1024, hop_size=320, f_max=14000.0),
                       channels, 527)
        net.fc1 = torch.nn.Linear(channels[-1], audio_dim)
        with torch.no_grad():  # variance-keeping weights, so the clip embedding depends on the clip at any depth
            for m in net.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.weight.requires_grad:
                    torch.nn.init.kaiming_normal_(m.weight)
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.bias.uniform_(-0.3, 0.3)
            net.bn0.running_mean.uniform_(-40, -20), net.bn0.running_var.uniform_(100, 300)
        return {'audio_encoder.base.' + k: v for k, v in net.state_dict().items()}
    s = {**SWIN_TINY, **swin}
    net = build_swin(256, 64, 4, 4, s['embed_dim'], s['depths'], s['num_heads'], s['swin_window'])
    state = to_official_state(net)
    with torch.no_grad():
        for v in state.values():
            if v.is_floating_point():
                v.add_(0.02 * torch.randn_like(v))
        state['bn0.running_mean'].uniform_(-40, -20), state['bn0.running_var'].uniform_(100, 300)
    state['logmel_extractor.melW'] = slaney_mel_filterbank(32000, 1024, 64, 50, 14000)
    real, imag = dft_kernels(1024, 1024)  # torchlibrosa's frozen DFT, which msclap reads from the file
    state['spectrogram_extractor.stft.conv_real.weight'] = real
    state['spectrogram_extractor.stft.conv_imag.weight'] = imag
    state['tscam_conv.weight'] = torch.zeros(527, 8 * s['embed_dim'], 2, 3)
    state['head.weight'] = torch.zeros(527, 527)
    state['layers.0.blocks.0.attn_mask'] = torch.zeros(64, 64, 64)
    return {'audio_encoder.base.htsat.' + k: v for k, v in state.items()}


def write_msclap(path: Path, version: str, text_folder: Path, audio_dim: int = 32, d_proj: int = 16,
                 seed: int = 0, channels=CNN14_TINY, swin: dict = SWIN_TINY) -> Path:
    """A random MS-CLAP checkpoint of `version` ('2022': CNN14 + BERT, '2023': HTS-AT + GPT-2) whose text tower is
    the config in `text_folder` (write_bert_folder / write_gpt2_folder), saved as msclap's {'model': state}; the
    text tower carries the buffers older transformers saved (position_ids, GPT-2's attn.bias)."""
    import transformers

    torch.manual_seed(seed)
    state = audio_state(version, audio_dim if version == '2022' else 8 * {**SWIN_TINY, **swin}['embed_dim'],
                        channels, swin)
    audio_in = state['audio_encoder.base.fc1.weight'].shape[0] if version == '2022' else 8 * {**SWIN_TINY, **swin}[
        'embed_dim']
    state.update(_projection('audio_encoder.projection.', audio_in, d_proj))
    text = transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(text_folder))
    with torch.no_grad():  # weights large enough that the pooled token depends on the whole caption
        for w in (w for w in text.parameters() if w.dim() == 2):
            w.normal_(0, 1 / min(w.shape) ** 0.5)
        for m in text.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    state.update({'caption_encoder.base.' + k: v for k, v in text.state_dict().items()})
    if version == '2022':
        state['caption_encoder.base.embeddings.position_ids'] = torch.arange(512)[None]
    else:
        state['caption_encoder.base.h.0.attn.bias'] = torch.ones(1, 1, 1024, 1024, dtype=torch.bool).tril()
    state.update(_projection('caption_encoder.projection.', text.config.hidden_size, d_proj))
    state['logit_scale'] = torch.tensor(2.6593)
    torch.save({'model': state, 'optimizer': None, 'epoch': 44}, path)
    return path


def tiny_msclap(folder: Path, version: str = '2022') -> dict:
    """Writes a tiny MS-CLAP of `version` and its text model folder under `folder`; returns the config values."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (write_bert_folder if version == '2022' else write_gpt2_folder)(folder / f'text_{version}', **TEXT_TINY)
    path = write_msclap(folder / f'CLAP_weights_{version}.pth', version, text)
    return {'weight_file': str(path), 'text_model': str(text), **({k: list(v) if isinstance(v, tuple) else v
                                                                   for k, v in SWIN_TINY.items()}
                                                                  if version == '2023' else {})}
