"""A tiny random WavCaps HTSAT-BERT checkpoint in the publisher's layout ({'model': ASE state dict, 'config': the
training settings}), with a local text-model folder (BERT config.json + a character tokenizer) so nothing is
downloaded. Used by tests/test_wavcaps.py, the registry-wide tests (tiny_models.TINY) and
benchmarks/parity_wavcaps.py."""

from __future__ import annotations

from pathlib import Path

import torch

# Reduced sizes: HTS-AT as the htsat tiny case's (tiny_models.HTSAT_SMALL: 2.5 s chunks), a 1-layer BERT, a 32-d
# joint space. tiny_models is imported inside the functions: it imports this module for its TINY table.
TINY_BERT = dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 max_position_embeddings=64)
TINY_EMBED = 32


def write_text_folder(folder: Path, **bert) -> Path:
    """A BERT config.json (TINY_BERT unless sizes are given) and a character tokenizer saved into `folder`."""
    import transformers

    from helpers.tiny_models import write_clap_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    transformers.BertConfig(**(bert or TINY_BERT)).save_pretrained(folder)
    write_clap_tokenizer(folder)
    return folder


def cnn14_state(channels: tuple, seed: int = 0) -> dict:
    """WavCaps' Cnn14 tensors under the official names (bn0, conv_block1-6; random weights and BN statistics) with
    the torchlibrosa constants the official module saves."""
    from evar.frontend import slaney_mel_filterbank
    from evar.models.panns import ConvBlock

    from helpers.tiny_models import _randomise_batchnorm

    torch.manual_seed(seed)
    body = torch.nn.Module()
    body.bn0 = torch.nn.BatchNorm2d(64)
    cin = 1
    for i, cout in enumerate(channels, 1):
        setattr(body, f'conv_block{i}', ConvBlock(cin, cout))
        cin = cout
    _randomise_batchnorm(body)
    state = {k: v.clone() for k, v in body.state_dict().items()}
    state['audio_feats_extractor.log_trans.melW'] = slaney_mel_filterbank(32000, 1024, 64, 50, 14000)
    state['audio_feats_extractor.mel_trans.stft.conv_real.weight'] = torch.zeros(513, 1, 1024)
    return state


def write_wavcaps(path: Path, text_folder: Path, seed: int = 0, embed_size: int = TINY_EMBED, swin: dict = None,
                  bert: dict = None, hop_size: int = 320, cnn14: tuple = None) -> dict:
    """Random ASE weights under the official names written to `path` ({'model', 'config', 'epoch'}, as WavCaps'
    train.py saves); returns the state dict. `swin`: HTS-AT sizes (default the tiny ones); `cnn14`: a CNN14 audio
    encoder with these six channel counts instead of HTS-AT; `bert`: BertConfig sizes (default TINY_BERT);
    `hop_size`: the hop the saved config declares (320 in the releases)."""
    import transformers

    from helpers.tiny_models import HTSAT_SMALL, write_htsat

    sizes = swin if swin is not None else {k: v for k, v in HTSAT_SMALL.items() if k != 'clip_sec'}
    if cnn14:
        audio, width = cnn14_state(cnn14, seed), cnn14[-1]
    else:
        audio = write_htsat(path.with_suffix('.htsat.tmp'), seed=seed, **sizes)
        path.with_suffix('.htsat.tmp').unlink()
        audio['audio_feats_extractor.log_trans.melW'] = audio.pop('logmel_extractor.melW')
        audio['audio_feats_extractor.mel_trans.stft.conv_real.weight'] = audio.pop(
            'spectrogram_extractor.stft.conv_real.weight')
        width = 8 * sizes.get('embed_dim', 96)
    torch.manual_seed(seed + 1)
    text = transformers.AutoModel.from_config(transformers.BertConfig(**(bert or TINY_BERT)), add_pooling_layer=False)
    text_state = {k: v + 0.02 * torch.randn_like(v) if v.is_floating_point() else v
                  for k, v in text.state_dict().items()}
    text_state['embeddings.position_ids'] = torch.arange(text.config.max_position_embeddings)[None]
    state = {'audio_encoder.audio_enc.' + k: v for k, v in audio.items()}
    state.update({'text_encoder.text_encoder.' + k: v for k, v in text_state.items()})
    for side, in_d in (('audio_proj', width), ('text_proj', text.config.hidden_size)):
        head = torch.nn.Sequential(torch.nn.Linear(in_d, embed_size), torch.nn.ReLU(),
                                   torch.nn.Linear(embed_size, embed_size))
        state.update({f'{side}.{k}': v for k, v in head.state_dict().items()})
    state['temp'] = torch.tensor(0.07)
    config = {'embed_size': embed_size, 'temp': 0.07, 'embed_regularization': True,
              'audio_args': {'sr': 32000, 'n_fft': 1024, 'hop_length': hop_size, 'f_min': 50, 'f_max': 14000,
                             'n_mels': 64, 'max_length': 30, 'mono': True},
              'audio_encoder_args': ({'type': 'cnn', 'model': 'Cnn14'} if cnn14 else
                                     {'type': 'transformer', 'model': 'htsat'}) | {'pretrained': True, 'freeze': False},
              'text_encoder_args': {'type': str(text_folder), 'freeze': False},
              'training': {'spec_augmentation': True}}
    torch.save({'model': state, 'config': config, 'epoch': 10}, path)
    return state


def tiny_wavcaps(folder: Path, fast: bool = False) -> dict:
    """Writes the tiny checkpoint and text folder under `folder`; the config values that load them. `fast`: a 640
    sample hop and 5 s chunks (one chunk per ESC-50 clip, half the frames), for the script tests."""
    from helpers.tiny_models import HTSAT_SMALL

    text = write_text_folder(folder / 'wavcaps_text')
    path = folder / 'HTSAT-BERT-tiny.pt'
    write_wavcaps(path, text, hop_size=640 if fast else 320)
    return {'weight_file': str(path), 'text_model': str(text), **HTSAT_SMALL,
            **(dict(hop_size=640, clip_sec=5.0) if fast else {})}
