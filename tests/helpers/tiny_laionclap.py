"""A tiny random LAION-CLAP checkpoint in the laion_clap package's file layout ({'state_dict': {'module.<official
key>': tensor}}, as 630k-audioset-best.pt is saved), with a RoBERTa-style text tower whose config and
character-level tokenizer are saved in a folder for `text_model`."""

from __future__ import annotations

from pathlib import Path

import torch

# A 2-stage Swin (16 -> 32 wide, window 8) on the real 256 x 256 HTS-AT image, and a 1-layer 16-d text tower.
TINY_AUDIO = (16, (1, 1), (2, 2), 8)
TINY_TEXT = dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 max_position_embeddings=90, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                 eos_token_id=2)
PROJECTION_DIM = 16


def official_state(clap) -> dict:
    """A ClapModel's tensors under laion_clap's names, with the extra tensors the published files hold (torchlibrosa
    constants, the AudioSet head, Swin attention masks, the training MLPs, RoBERTa's position ids)."""
    from evar.frontend import slaney_mel_filterbank
    from evar.models.htsat import to_official_state

    state = {f'audio_branch.{k}': v for k, v in to_official_state(clap.audio_model).items()}
    state['audio_branch.logmel_extractor.melW'] = slaney_mel_filterbank(48000, 1024, 64, 50.0, 14000.0)
    state['audio_branch.spectrogram_extractor.stft.conv_real.weight'] = torch.randn(513, 1, 1024)
    state['audio_branch.tscam_conv.weight'] = torch.randn(527, 32, 2, 3)
    state['audio_branch.head.weight'] = torch.randn(527, 527)
    state['audio_branch.layers.0.blocks.0.attn_mask'] = torch.zeros(64, 64, 64)
    for key, value in clap.text_model.state_dict().items():
        if key != 'embeddings.token_type_ids':
            state[f'text_branch.{key}'] = value.clone()
    for side in ('audio_projection', 'text_projection'):
        for ours, index in (('linear1', '0'), ('linear2', '2')):
            for kind in ('weight', 'bias'):
                state[f'{side}.{index}.{kind}'] = getattr(getattr(clap, side), ours).state_dict()[kind].clone()
    state['logit_scale_a'] = clap.logit_scale_a.detach().clone()
    state['logit_scale_t'] = clap.logit_scale_t.detach().clone()
    for side in ('audio_transform', 'text_transform'):
        state[f'{side}.sequential.0.weight'] = torch.randn(PROJECTION_DIM, PROJECTION_DIM)
    return state


def random_clap(fusion: bool = False, seed: int = 0):
    """(the tiny random ClapModel the writer saves, its RobertaConfig): the same tensors for the same arguments."""
    import transformers

    from evar.models.laionclap import build_clap
    from helpers.tiny_models import _randomise_batchnorm

    text_config = transformers.RobertaConfig(**TINY_TEXT)
    torch.manual_seed(seed)
    clap = build_clap((*TINY_AUDIO, fusion), text_config, PROJECTION_DIM)
    with torch.no_grad():
        _randomise_batchnorm(clap)
        for p in clap.parameters():  # biases and norms too
            p.add_(torch.randn_like(p) * 0.02)
    return clap.eval(), text_config


def write_laionclap(folder: Path, fusion: bool = False, seed: int = 0, edit=None) -> dict:
    """Writes `630k-audioset[-fusion]-best.pt` (`random_clap(fusion, seed)`; `edit(state)` may change its official
    state dict first) and a `roberta` text folder under `folder`; returns the config values that load them
    (`create_model('laionclap', **values)`)."""
    from helpers.tiny_models import write_clap_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    clap, text_config = random_clap(fusion, seed)
    text_folder = folder / 'roberta'
    text_config.save_pretrained(text_folder)
    write_clap_tokenizer(text_folder)
    state = official_state(clap)
    if edit is not None:
        edit(state)
    path = folder / ('630k-audioset-fusion-best.pt' if fusion else '630k-audioset-best.pt')
    torch.save({'epoch': 45, 'state_dict': {f'module.{k}': v for k, v in state.items()}}, path)
    return {'weight_file': str(path), 'text_model': str(text_folder)}


def tiny_laionclap(folder: Path) -> dict:
    """The contract tests' case: a tiny non-fused checkpoint."""
    return write_laionclap(folder / 'laionclap')
