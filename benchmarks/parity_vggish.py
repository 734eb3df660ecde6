"""Side-by-side parity check: evar's VGGish against the official front end and the PyTorch ports' network.

Reference side, from a checkout of github.com/harritaylor/torchvggish: `vggish_input.waveform_to_examples` (its
`mel_features` is the TensorFlow release's numpy front end), the `VGG` network and the `Postprocessor` (PCA +
quantisation); and, if given, tcvrick/audioset-vggish-tensorflow-to-pytorch's `VGGish` (the module EVAR loads,
fully connected layers named `fc.*`). Seeded random weights (and random PCA parameters saved as numpy arrays, like
the released file) are loaded strictly into evar's `vggish`; real clips of several lengths are compared one by one
and as one padded batch. `resampy` is stubbed (never called: the clips are already 16 kHz), so numba is not needed:

    python benchmarks/parity_vggish.py --torchvggish_repo /path/to/torchvggish \\
        --tcvrick_repo /path/to/audioset-vggish-tensorflow-to-pytorch

Seen on 2026-11-22 (reference venv: torch 2.9.1, numpy 2.4; 5 clips of 0.99, 1.2, 3.3, 5 and 12 s from ESC-50 and
RAVDESS, 1 + 1 + 3 + 5 + 12 patches): log-mel patches, 128-d embeddings (torchvggish's VGG and tcvrick's `fc.*`
module) and fc1 4096-d outputs identical (max diff 0.0: both compute the front end in float64 with pocketfft and
the network with the same float32 ops); our padded batch vs single clips 5.2e-07 relative; postprocessed (PCA +
8-bit) values: 0 of 2816 differ.
"""

import argparse
import glob
import sys
import tempfile
import types
from pathlib import Path

from parity_common import load_clip, padded

SHARED = Path(__file__).resolve().parents[2] / 'shared' / 'data'


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--torchvggish_repo', required=True)
    parser.add_argument('--tcvrick_repo', default=None)
    args = parser.parse_args()

    import numpy as np
    import torch

    sys.modules.setdefault('resampy', types.ModuleType('resampy'))  # only used to resample, never here
    sys.path.insert(0, args.torchvggish_repo)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from torchvggish import vggish_input
    from torchvggish.vggish import VGG, Postprocessor, make_layers

    from evar.models import create_model

    torch.manual_seed(0)
    ref_net = VGG(make_layers()).eval()
    rng = np.random.default_rng(0)
    pca_vectors = rng.normal(size=(128, 128)) / 4  # stands in for the released whitening PCA
    pca_means = rng.normal(size=128) * 0.1
    post = Postprocessor()
    post.load_state_dict({'pca_eigen_vectors': torch.as_tensor(pca_vectors, dtype=torch.float),
                          'pca_means': torch.as_tensor(pca_means.reshape(-1, 1), dtype=torch.float)})

    esc = sorted(glob.glob(str(SHARED / 'ESC-50' / 'audio' / '*.flac')))
    rav = sorted(glob.glob(str(SHARED / 'RAVDESS' / 'Actor_01' / '*')))
    clips = [load_clip(esc[0], 0.99), load_clip(esc[1], 1.2), load_clip(rav[0]), load_clip(esc[2]),
             np.concatenate([load_clip(f) for f in esc[3:6]])[:12 * 16000]]
    with tempfile.TemporaryDirectory() as tmp:
        weights, pca = Path(tmp) / 'vggish.pth', Path(tmp) / 'pca.pth'
        torch.save(ref_net.state_dict(), weights)
        torch.save({'pca_eigen_vectors': pca_vectors, 'pca_means': pca_means}, pca)
        ours = create_model('vggish', weight_file=str(weights)).eval()
        ours_fc1 = create_model('vggish', weight_file=str(weights), output_layers=0).eval()
        ours_post = create_model('vggish', weight_file=str(weights), postprocess=True, pca_file=str(pca)).eval()
        tcvrick = None
        if args.tcvrick_repo:
            sys.path.insert(0, args.tcvrick_repo)
            from vggish import VGGish as TcvrickVGGish

            torch.manual_seed(1)
            tcvrick = TcvrickVGGish().eval()
            torch.save(tcvrick.state_dict(), Path(tmp) / 'tcvrick.pth')
            ours_tcv = create_model('vggish', weight_file=str(Path(tmp) / 'tcvrick.pth')).eval()

    worst = dict(spec=0.0, emb=0.0, fc1=0.0, tcv=0.0, batch=0.0)
    differing = total = 0
    singles = []
    with torch.inference_mode():
        for x in clips:
            examples = torch.as_tensor(vggish_input.waveform_to_examples(x.astype(np.float64), 16000,
                                                                         return_tensor=False), dtype=torch.float32)
            wav, n = torch.from_numpy(np.ascontiguousarray(x))[None], torch.tensor([len(x)])
            feats, count = ours.features(wav, n)
            patches = feats[0].T.reshape(-1, 96, 64)
            assert patches.shape == examples.shape, (patches.shape, examples.shape)
            worst['spec'] = max(worst['spec'], float((patches - examples).abs().max()))
            ref = ref_net(examples[:, None])
            emb = ours(wav, n).embeddings[0]
            singles.append(emb)
            worst['emb'] = max(worst['emb'], float((ref - emb).abs().max() / ref.abs().max()))
            ref_fc1 = ref_net.embeddings[1](ref_net.embeddings[0](
                ref_net.features(examples[:, None]).permute(0, 2, 3, 1).flatten(1)))
            fc1 = ours_fc1(wav, n).embeddings[0]
            worst['fc1'] = max(worst['fc1'], float((ref_fc1 - fc1).abs().max() / ref_fc1.abs().max()))
            ref_q = post(ref).reshape(-1, 128)
            q = ours_post(wav, n).embeddings[0]
            differing += int((ref_q != q).sum())
            total += q.numel()
            if tcvrick is not None:
                ref_t = tcvrick(examples[:, None])
                emb_t = ours_tcv(wav, n).embeddings[0]
                worst['tcv'] = max(worst['tcv'], float((ref_t - emb_t).abs().max() / ref_t.abs().max()))
        batch, lengths = padded(clips)
        frames = ours(batch, lengths)
        for i, single in enumerate(singles):
            got = frames.embeddings[i, :int(frames.mask[i].sum())]
            worst['batch'] = max(worst['batch'], float((got - single).abs().max() / single.abs().max()))
    print(f'{len(clips)} clips of {[round(len(x) / 16000, 2) for x in clips]} s: log-mel patches max |diff| '
          f'{worst["spec"]:.1e}; embedding max relative diff {worst["emb"]:.1e} (torchvggish), {worst["tcv"]:.1e} '
          f'(tcvrick), fc1 {worst["fc1"]:.1e}; padded batch vs single {worst["batch"]:.1e}; postprocessed values '
          f'differing {differing} of {total}')


if __name__ == '__main__':
    main()
