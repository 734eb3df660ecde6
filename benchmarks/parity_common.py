"""Helpers the parity scripts share. The scripts are run as `python benchmarks/parity_x.py`, which puts this folder
first on sys.path, so they import these as `from parity_common import ...`. Heavy modules (torch, soundfile) are
imported inside the functions, as in the scripts, so `--help` stays quick."""


def relative(a, b) -> float:
    """Max |a - b| relative to max |b| (b is the reference)."""
    return float((a - b).abs().max() / b.abs().max())


def randomise_batchnorm(module, generator):
    """Seeded random running statistics and affine terms for every BatchNorm2d of `module` (call under no_grad)."""
    import torch

    for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
        bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
        bn.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
        bn.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)


def randomise_batchnorm_uniform(module):
    """Random running statistics and affine terms, from torch's global generator, for every BatchNorm2d of `module`
    (call under no_grad), so every BN takes part in the comparison."""
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)


def perturb_init_bn_and_layernorms(model):
    """Makes the init BN (`model.init_bn[1]`, CED and Dasheng) and every LayerNorm non-trivial, from torch's global
    generator (call under no_grad)."""
    import torch

    bn = model.init_bn[1]
    bn.running_mean.uniform_(-60, -10), bn.running_var.uniform_(100, 400)
    bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
    for m in model.modules():
        if isinstance(m, torch.nn.LayerNorm):
            m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)


def load_clip(path, seconds=None):
    """A 16 kHz file as mono float32 numpy, cut to its first `seconds` when given."""
    import numpy as np
    import soundfile as sf

    x, sr = sf.read(path, dtype='float32', always_2d=True)
    x = x.mean(1)
    assert sr == 16000, f'{path}: expected 16 kHz audio'
    return x[:int(seconds * sr)] if seconds else np.ascontiguousarray(x)


def padded(clips):
    """Zero-pads 1-d clips (tensors or numpy arrays) into one float32 batch [B, T]; returns it and the lengths."""
    import torch

    wav = torch.zeros(len(clips), max(len(c) for c in clips))
    for i, c in enumerate(clips):
        wav[i, :len(c)] = torch.as_tensor(c)
    return wav, torch.tensor([len(c) for c in clips])
