"""Side-by-side parity check: evar's ESResNeXt-fbsp against the official code (github.com/AndreyGuzhov/ESResNeXt-fbsp)
on the same real clips.

Builds the official `model.esresnet_fbsp.ESResNeXtFBSP` with EVAR's settings (n_fft 2048, hop 561, window 1654
Blackman-Harris, normalized, no resizing, 527 classes, attention) and seeded random weights: BatchNorm statistics
and affine terms randomised, and the fbsp parameters m, fb, fc moved off their initial values so the taper and its
complex power are exercised. Its state dict is loaded strictly into evar's `esresnext_fbsp`; both embed the clips
(the official side through EVAR's path: _forward_pre_processing, _forward_features, _forward_reduction of wave *
32767). The official package imports `ignite_trainer` (which needs pytorch-ignite) and termcolor only for training
helpers: stand-ins for those are installed in sys.modules here. Needs torchvision (the official code imports it):

    D=../shared/data; python benchmarks/parity_esresnext.py --esresnext /path/to/ESResNeXt-fbsp --audio \\
        $D/fsdd/recordings/0_george_0.flac $(ls $D/RAVDESS/Actor_01/*.flac | head -1) \\
        $(ls $D/ESC-50/audio/*.flac | head -1) $D/yesno/0_0_0_0_1_1_1_1.flac

Seen on 2026-11-22 (reference venv: torch 2.9.1, torchvision 0.24.1; 4 clips of 0.3 s to 6.35 s at 44.1 kHz):
dB band images, pooled 2048-d embeddings and 527 logits all bit-identical to the official ones (max difference
0.0: the same torch operations in the same order); all 4 clips as one padded batch against each alone: identical.
Needs `PYTHONPATH` with msgpack-numpy (the official utils package imports it) and evar's audio reader (miniaudio).
"""

import argparse
import importlib.util
import sys
import types
from pathlib import Path

from parity_common import relative


def install_stand_ins(checkout: Path):
    """`ignite_trainer` with only its AbstractNet (loaded from the checkout), and termcolor if it is absent."""
    spec = importlib.util.spec_from_file_location('ignite_trainer._interfaces',
                                                  checkout / 'ignite_trainer' / '_interfaces.py')
    interfaces = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(interfaces)
    trainer = types.ModuleType('ignite_trainer')
    trainer.AbstractNet, trainer.AbstractTransform = interfaces.AbstractNet, interfaces.AbstractTransform
    sys.modules['ignite_trainer'] = trainer
    if importlib.util.find_spec('termcolor') is None:
        termcolor = types.ModuleType('termcolor')
        termcolor.colored = lambda text, *args, **kwargs: text
        sys.modules['termcolor'] = termcolor


def randomise(model, generator):
    import torch

    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            bn.weight.data.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            bn.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
        n = model.fbsp.m.numel()
        model.fbsp.m.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
        model.fbsp.fb.copy_(torch.rand(n, generator=generator) + 0.5)
        model.fbsp.fc.add_(torch.randn(n, generator=generator) * 0.3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--esresnext', required=True, help='a checkout of AndreyGuzhov/ESResNeXt-fbsp')
    parser.add_argument('--audio', nargs='+', required=True)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch

    checkout = Path(args.esresnext).resolve()
    install_stand_ins(checkout)
    sys.path.insert(0, str(checkout))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from model.esresnet_fbsp import ESResNeXtFBSP

    from evar.audio import load_audio
    from evar.models import create_model

    torch.manual_seed(args.seed)
    official = ESResNeXtFBSP(n_fft=2048, hop_length=561, win_length=1654, window='blackmanharris', normalized=True,
                             onesided=True, spec_height=-1, spec_width=-1, num_classes=527, apply_attention=True)
    randomise(official, torch.Generator().manual_seed(args.seed))
    official.eval()
    import tempfile

    worst = {'dB input abs': 0.0, 'dB input rel': 0.0, 'embedding rel': 0.0, 'logits rel': 0.0}
    clips = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        weights = Path(tmp) / 'ESResNeXtFBSP_random.pt'
        torch.save(official.state_dict(), weights)
        ours = create_model('esresnext_fbsp', weight_file=str(weights)).eval()
        logits_model = create_model('esresnext_fbsp', weight_file=str(weights), output_layers=1).eval()
        for f in args.audio:
            wav = torch.from_numpy(load_audio(f, 44100)[0].astype(np.float32))
            clips.append(wav)
            x, n = wav[None], torch.tensor([len(wav)])
            ref_db = official._forward_pre_processing(x * 32767)  # [1, 1, 3, H, W]
            feats, _ = ours.features(x, n)
            our_db = ours.body.log_power_bands(feats)
            assert ref_db[:, 0].shape == our_db.shape, (ref_db.shape, our_db.shape)
            diff = (our_db - ref_db[:, 0]).abs().max()
            worst['dB input abs'] = max(worst['dB input abs'], float(diff))
            worst['dB input rel'] = max(worst['dB input rel'], float(diff / ref_db.abs().max()))
            ref = official._forward_reduction(official._forward_features(ref_db))
            worst['embedding rel'] = max(worst['embedding rel'], relative(ours.embed(x, n), ref))
            worst['logits rel'] = max(worst['logits rel'], relative(logits_model.embed(x, n), official.fc(ref)))
            print(f'{Path(f).name}: {len(wav) / 44100:.2f} s, bands {tuple(ref_db.shape[-3:])}')
        lengths = torch.tensor([len(c) for c in clips])
        batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
        batched = ours.embed(batch, lengths)
        single = torch.cat([ours.embed(c[None], lengths[i:i + 1]) for i, c in enumerate(clips)])
    print(f'{len(clips)} clips: ' + ', '.join(f'{k} {v:.1e}' for k, v in worst.items())
          + f', padded batch vs alone {relative(batched, single):.1e}')


if __name__ == '__main__':
    main()
