"""Side-by-side parity check of evar's BYOL-A (v1, `byola`) against EVAR's wrapper, with the real d512 weights on
real Speech Commands clips.

Reference: `ar_byola.AR_BYOLA` of nttcslab/eval-audio-repr at 88ba772 (what EVAR's published BYOL-A numbers come
from), built from EVAR's own config/byola.yaml with weight_file and feature_d=512, which computes its log-mel with
nnAudio's MelSpectrogram (Slaney mel filters of unit area) and imports the network from the byol-a checkout at
<evar_ref>/external/byol_a (as EVAR's Preparing-models.md says). It is not the official byol-a code (HTK filters):
benchmarks/parity_byola.py checks that one, against config/byola_official.yaml.

Both sides get the same waves: `--n_clips` files spread evenly over ../shared/data/speech_commands_v2_test_a (every
class), each zero-padded or cut to 1 s as EVAR's spcv2 task (unit_sec 1) does, or the files given with `--files`.
EVAR's side runs as its lineareval does: `precompute` (its normalisation statistics, over batches of the config's
batch_size), then `forward` on batches. evar's side embeds the same waves with config/<--config>.yaml and EVAR's
statistics (or `--norm_stats` on both sides), so the figures measure the front end and the network only. Printed:
- per-clip relative difference of the clip embeddings, ||ours - EVAR|| / ||EVAR|| (L2) and max|ours - EVAR| /
  max|EVAR|, median and max over clips;
- EVAR's statistics beside evar's own on the same waves (evar pools every valid frame; EVAR's running mean drops
  its first batch, see below), and the embedding difference evar's own statistics would make;
- with `--print_values i,j,...`, each clip's embedding L2 norm and those components, from EVAR's side (the reference
  values of tests/test_byola_evar.py come from this).

EVAR's package is also called `evar`, so the reference runs in its own interpreter (`--ref_python`, a venv with
torch, nnAudio, easydict, pandas, pyyaml, soundfile) and the two exchange .npy files. EVAR's evar/common.py imports
torchaudio, which AR_BYOLA never uses; when the reference venv has no torchaudio (none is built for torch 2.13), an
empty stand-in module is installed so the import succeeds, and the script says so.

    python benchmarks/parity_evar_byola.py --ref_python /tmp/venv_evarref_byola/bin/python --evar_ref /tmp/evar_ref \\
        --weights ../shared/weights/AudioNTT2020-BYOLA-64x96d512.pth --n_clips 240 [--config byola_official]

Seen on 2026-12-05 (EVAR 88ba772 + byol-a 3e65c92; reference venv torch 2.13.0 CPU, nnAudio 0.3.4, no torchaudio;
evar venv torch 2.13.0 CPU; real d512 weights):
- 240 clips (one EVAR batch), EVAR's statistics mean -9.1866, std 4.8596 on both sides: config/byola_d512.yaml
  L2 relative difference median 9.9e-7, max 8.9e-6 (max-abs relative: median 7.4e-7, max 1.9e-5).
  config/byola_official.yaml (HTK filters) with its own statistics (mean -4.9187, std 5.0532): L2 median 17 %,
  max 32 %; with EVAR's statistics 48 % / 86 %.
- 1200 clips (five EVAR batches of 256, in sorted order): config/byola_d512.yaml L2 median 1.0e-6, max 9.8e-6.
  EVAR's statistics mean -9.6810, std 4.6597; evar's own pooled over every frame mean -9.3089, std 4.8086, which
  moves the embeddings by 6.7 % (median L2). EVAR's RunningMean divides by the count of batches before this one
  (n, not n + 1), so its result is the plain mean of the batch means of every batch but the first (-9.6810 here,
  checked; the first batch, silence and unknown words, has -7.96), and its variance likewise; with one batch the
  two agree (the 240-clip run: same figures on both sides).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAR_COMMIT = '88ba7728896484b22e02187dedbb86fc61fc8177'
SPEECH_COMMANDS = 'speech_commands_v2_test_a'
CLIP_SAMPLES = 16000  # EVAR's spcv2 unit_sec 1.0 at 16 kHz


# ---------------------------------------------------------------------------------------------------------------
# Reference side (runs in the reference venv; imports EVAR's `evar`, never ours)


def run_reference(args) -> None:
    """Writes EVAR's embeddings of work/waves.npy to work/ref.npy ([clips, D]) and the statistics it used to
    work/ref_stats.npy ([mean, std]: its own `precompute`, or --norm_stats)."""
    import numpy as np
    import torch

    work = Path(args.work)
    sys.path.insert(0, args.evar_ref)
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        print('reference: no torchaudio in this venv; an empty stand-in lets evar/common.py import (AR_BYOLA does not '
              'use it)', flush=True)
        stub = types.ModuleType('torchaudio')
        stub.functional, stub.transforms = types.ModuleType('torchaudio.functional'), types.ModuleType('torchaudio.transforms')
        sys.modules.update({'torchaudio': stub, 'torchaudio.functional': stub.functional,
                            'torchaudio.transforms': stub.transforms})
    torch.set_num_threads(2)
    from evar import ar_byola
    from evar.common import complete_cfg
    from evar.utils import load_yaml_config

    if not hasattr(ar_byola, 'AudioNTT2020Task6'):  # EVAR's ar_byola swallows this import error
        from external.byol_a.byol_a.models import AudioNTT2020Task6  # noqa: F401  (raises with the reason)
    cfg = load_yaml_config(Path(args.evar_ref) / 'config' / 'byola.yaml')
    cfg = complete_cfg(cfg, f'weight_file={args.weights},feature_d={args.feature_d}', no_id=True)
    ar = ar_byola.AR_BYOLA(cfg).eval()
    waves = torch.from_numpy(np.load(work / 'waves.npy'))
    loader = torch.utils.data.DataLoader(waves, batch_size=cfg.batch_size)
    if args.norm_stats:
        ar.norm_stats = torch.tensor(args.norm_stats)
    else:
        ar.precompute('cpu', loader)
    with torch.inference_mode():
        embeddings = torch.cat([ar(batch) for batch in loader])
    np.save(work / 'ref.npy', embeddings.numpy())
    np.save(work / 'ref_stats.npy', np.asarray([float(v) for v in ar.norm_stats]))


# ---------------------------------------------------------------------------------------------------------------
# evar side


def clip_files(data: Path, n_clips: int, files: list) -> list:
    """`files` (paths relative to `data`) when given, else `n_clips` Speech Commands files spread evenly over the
    sorted list (so every class is in)."""
    if files:
        return [data / f for f in files]
    every = sorted((data / SPEECH_COMMANDS).glob('*/*.flac'))
    step = max(1, len(every) // n_clips)
    return every[::step][:n_clips]


def load_waves(paths: list):
    """[clips, CLIP_SAMPLES] float32 numpy: each 16 kHz file zero-padded or cut to 1 s."""
    import numpy as np

    from parity_common import load_clip

    waves = np.zeros((len(paths), CLIP_SAMPLES), dtype=np.float32)
    for i, path in enumerate(paths):
        x = load_clip(str(path))[:CLIP_SAMPLES]
        waves[i, :len(x)] = x
    return waves


def build_ours(config: str, weights: str):
    """evar's model from config/<config>.yaml with `weights`, in eval mode."""
    sys.path.insert(0, str(ROOT))
    from evar.config import load_config
    from evar.models import create_model

    cfg = load_config(ROOT / 'config' / f'{config}.yaml', f'weight_file={weights}')
    return create_model(cfg.audio_repr, params=cfg.params).eval()


def ours(model, waves, mean: float, std: float, batch: int = 64):
    """evar's clip embeddings [clips, D] (float64 numpy) of `waves` standardised with (mean, std)."""
    import numpy as np
    import torch

    model.set_norm_stats(mean, std)
    x = torch.from_numpy(waves)
    lengths = torch.full((len(x),), x.shape[1])
    with torch.inference_mode():
        out = [model.embed(x[i:i + batch], lengths[i:i + batch]) for i in range(0, len(x), batch)]
    return torch.cat(out).double().numpy().astype(np.float64)


def own_stats(model, waves) -> tuple:
    """evar's (mean, std) of the front end over every valid frame of `waves`, as its extraction computes them."""
    import torch

    from evar.models.base import stats_from_sums

    x = torch.from_numpy(waves)
    with torch.inference_mode():
        return stats_from_sums(model.stat_sums(*model.features(x, torch.full((len(x),), x.shape[1]))).cpu())


def differences(mine, ref) -> dict:
    """Per-clip relative differences of [clips, D] arrays: 'l2' ||a - b|| / ||b||, 'max' max|a - b| / max|b|."""
    import numpy as np

    return {'l2': np.linalg.norm(mine - ref, axis=1) / np.linalg.norm(ref, axis=1),
            'max': np.abs(mine - ref).max(1) / np.abs(ref).max(1)}


def summary(diff: dict) -> str:
    """'L2 rel. median .. max .., max-abs rel. median .. max ..' of `differences`' output."""
    import numpy as np

    return ', '.join(f'{name} rel. median {np.median(v):.1e} max {v.max():.1e}'
                     for name, v in (('L2', diff['l2']), ('max-abs', diff['max'])))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ref_python', default='/tmp/venv_evarref_byola/bin/python', help="the reference venv's python")
    parser.add_argument('--evar_ref', default='/tmp/evar_ref', help=f'EVAR exported at {EVAR_COMMIT[:7]}, with the '
                        'byol-a code at external/byol_a')
    parser.add_argument('--weights', default=str(ROOT.parent / 'shared' / 'weights' / 'AudioNTT2020-BYOLA-64x96d512.pth'))
    parser.add_argument('--feature_d', type=int, default=512, help="EVAR's feature_d for the weights")
    parser.add_argument('--config', default='byola_d512', help="evar's config stem (byola_official: the HTK front end)")
    parser.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data'))
    parser.add_argument('--n_clips', type=int, default=240)
    parser.add_argument('--files', nargs='*', default=[], help='clips relative to --data instead of --n_clips')
    parser.add_argument('--norm_stats', type=float, nargs=2, help='fixed mean and std for both sides')
    parser.add_argument('--print_values', default='', help='comma-separated embedding indices to print per clip')
    parser.add_argument('--side', default='evar', choices=['evar', 'ref'], help=argparse.SUPPRESS)
    parser.add_argument('--work', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == 'ref':
        run_reference(args)
        return

    import numpy as np

    paths = clip_files(Path(args.data), args.n_clips, args.files)
    waves = load_waves(paths)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / 'waves.npy', waves)
        command = [args.ref_python, __file__, '--side', 'ref', '--work', tmp, '--evar_ref', args.evar_ref,
                   '--weights', args.weights, '--feature_d', str(args.feature_d)]
        subprocess.run(command + (['--norm_stats', *map(str, args.norm_stats)] if args.norm_stats else []), check=True)
        ref = np.load(Path(tmp) / 'ref.npy').astype(np.float64)
        mean, std = (float(v) for v in np.load(Path(tmp) / 'ref_stats.npy'))
    model = build_ours(args.config, args.weights)
    mine = ours(model, waves, mean, std)
    assert mine.shape == ref.shape, f'evar {mine.shape} vs EVAR {ref.shape}'
    print(f"Reference: EVAR's wrapper ar_byola.AR_BYOLA (nttcslab/eval-audio-repr {EVAR_COMMIT[:7]}, nnAudio log-mel), "
          f'weights {Path(args.weights).name}, {len(paths)} real 1 s clips; evar: config/{args.config}.yaml.')
    print(f'statistics used by both sides: mean {mean:.4f}, std {std:.4f}'
          + (' (--norm_stats)' if args.norm_stats else " (EVAR's precompute)"))
    print(f'embeddings, evar vs EVAR: {summary(differences(mine, ref))}')
    own_mean, own_std = own_stats(model, waves)
    print(f"evar's own statistics on the same waves: mean {own_mean:.4f}, std {own_std:.4f}; embeddings with them vs "
          f'EVAR: {summary(differences(ours(model, waves, own_mean, own_std), ref))}')
    if args.print_values:
        index = [int(i) for i in args.print_values.split(',')]
        print(f"EVAR's values (index {index}):")
        for path, row in zip(paths, ref):
            print(f"    '{path.relative_to(args.data)}': ({float(np.linalg.norm(row))!r}, {[float(row[i]) for i in index]}),")


if __name__ == '__main__':
    main()
