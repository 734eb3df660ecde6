"""Side-by-side parity check: evar's M2D and MSM-MAE against the official runtimes, random weights, real clips.

Official code (not part of evar; exported outside the project): github.com/nttcslab/m2d `examples/portable_m2d.py`
(needs timm, einops, nnAudio) and github.com/nttcslab/msm-mae `msm_mae/runtime.py` with `models_mae.py` and
`pos_embed.py` of facebookresearch/mae at 6a2ba40 patched by `msm_mae/patch_msm_mae.diff` (as its README says). The
official models are built with seeded random weights (perturbed so LayerNorms and biases are not trivial), saved in
the official containers under official folder names, loaded by the official loaders and strictly by evar, and run
on the same clips: ESC-50 (5 s), RAVDESS (~3.5 s), speech commands (1 s) and a 14.5 s concatenation of clips, which
spans several encoder windows (608 frames for M2D, 208 for MSM-MAE) so chunking is exercised. The official
runtimes take one clip at a time (their batches must be of equal length); evar embeds all clips as one padded
batch, and each clip's valid frames are compared. Run in an environment with the official dependencies, e.g.:

    PYTHONPATH=/work/ref/m2d/site /work/evar_ref/venv/bin/python benchmarks/parity_m2d.py \\
        --m2d_repo /work/ref/m2d/m2d --msm_mae_repo /work/ref/m2d/msm-mae

Seen on 2026-11-22 (torch 2.9.1 CPU, timm 1.0.31, nnAudio 0.3.4; about 8 minutes on 2 busy cores):
    log-mel max |diff|: 16 kHz 7.2e-05, 32 kHz 9.7e-05
    M2D 80x608p16x16 (16 kHz), last layer stacked: max relative diff 2.3e-06
    M2D 80x208p16x16p32k (32 kHz): 4.2e-06; layer 6 of 12 (official block output via a hook): 3.1e-06;
        flat_features 1.1e-06
    MSM-MAE 80x208p16x16, attend_padding true (the official behaviour): no [CLS] 1.4e-06, with [CLS] 1.4e-06
    MSM-MAE default key mask: windows without padding 1.4e-06; the last, partly padded window differs (max relative
        7.4e-01 with these random weights) because the official attends to the zero padding and evar masks it (see
        evar/models/m2d.py).
"""

import argparse
import sys
import tempfile
from pathlib import Path

from parity_common import padded, relative

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ['ESC-50/audio/*.flac', 'RAVDESS/Actor_01/*.flac', 'speech_commands_v2_test_a/yes/*.flac']


def find_clips(data: Path) -> list:
    files = [sorted(data.glob(pattern))[0] for pattern in CLIPS]
    return files


def load_clips(files: list, sample_rate: int) -> list:
    import soundfile as sf
    import soxr
    import torch

    clips = []
    for f in files:
        x, rate = sf.read(str(f), dtype='float32', always_2d=True)
        clips.append(torch.from_numpy(soxr.resample(x.mean(1), rate, sample_rate).astype('float32')))
    long = torch.cat(clips + clips)[:int(14.5 * sample_rate)]
    return clips + [long]


def perturb(model, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('norm_stats'):
                p.copy_(torch.tensor([-6.3, 4.6]))
            else:
                p.add_(torch.randn(p.shape, generator=g) * 0.02)


def compare_m2d(portable, folder: str, rate: int, clips, work: Path, layer=None, flat=False):
    """Official PortableM2D vs evar M2D on `clips`; returns (max |log-mel diff|, max relative embedding diff)."""
    import functools

    import torch
    from einops import rearrange

    from evar.models import create_model

    input_size = [int(v) for v in folder.split('-')[1].split('p')[0].split('x')]
    torch.manual_seed(0)
    backbone = portable.LocalViT(in_chans=1, img_size=input_size, patch_size=[16, 16], embed_dim=768, depth=12,
                                 num_heads=12, mlp_ratio=4,
                                 norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6))
    perturb(backbone, 1)
    state = dict(backbone.state_dict())
    state['target_norm.weight'] = torch.ones(768)  # training containers also hold the target encoder, predictor...
    state['decoder_pred.weight'] = torch.zeros(4, 768)
    path = work / folder / 'checkpoint-300.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'model': state, 'epoch': 300, 'args': argparse.Namespace(input_size=input_size)}, path)

    official = portable.PortableM2D(str(path), flat_features=flat).eval()
    ours = create_model('m2d', weight_file=str(path), output_layers=-1 if layer is None else layer,
                        flat_features=flat, **_front_end(rate)).eval()
    captured = []
    if layer is not None:
        official.backbone.blocks[layer].register_forward_hook(lambda m, i, o: captured.append(o))
    worst_spec = worst = 0.0
    with torch.inference_mode():
        wav, lengths = padded(clips)
        frames = ours(wav, lengths)
        for i, clip in enumerate(clips):
            x = clip[None]
            ref_spec = official.to_log_mel_spec(x)[:, 0]
            our_spec, _ = ours.features(x, torch.tensor([x.shape[1]]))
            worst_spec = max(worst_spec, float((ref_spec - our_spec).abs().max()))
            captured.clear()
            ref = official.encode(x, average_per_time_frame=flat)
            if layer is not None:  # the hooked block outputs, stacked per window as the official runtimes do
                ref = torch.cat([rearrange(o[:, 1:], 'b (f t) d -> b t (f d)', f=5) for o in captured], dim=1)
            n = int(frames.mask[i].sum())
            assert n == ref.shape[1], f'{folder}: {n} frames vs official {ref.shape[1]}'
            worst = max(worst, relative(frames.embeddings[i, :n], ref[0]))
    return worst_spec, worst


def compare_msm_mae(runtime_module, clips, work: Path, use_cls: bool):
    """Official RuntimeMAE.encode_lms vs evar MSM-MAE with attend_padding true and false. Returns
    (official-behaviour diff, key-mask diff on clips filling whole windows, key-mask diff on the last window)."""
    import torch

    from evar.models import create_model

    models_mae = runtime_module.models_mae
    torch.manual_seed(0)
    mae = models_mae.mae_vit_base_patch16x16(img_size=[80, 208], norm_pix_loss=False, use_cls_token=use_cls)
    perturb(mae, 2)
    path = work / ('80x208p16x16_cls' if use_cls else '80x208p16x16_parity') / 'checkpoint-100.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'model': mae.state_dict()}, path)
    cfg = runtime_module.Config()
    official = runtime_module.RuntimeMAE(cfg=cfg, weight_file=str(path)).eval()
    mean, std = -6.1, 4.4
    padded_like_official = create_model('msm_mae', weight_file=str(path), norm_stats=[mean, std],
                                        attend_padding=True).eval()
    masked = create_model('msm_mae', weight_file=str(path), norm_stats=[mean, std]).eval()
    worst = worst_full = worst_last = 0.0
    with torch.inference_mode():
        wav, lengths = padded(clips)
        a = padded_like_official(wav, lengths)
        b = masked(wav, lengths)
        for i, clip in enumerate(clips):
            x = clip[None]
            lms = (official.to_feature(x) - mean) / std
            ref = official.encode_lms(lms)[0]
            n = int(a.mask[i].sum())
            assert n == ref.shape[0] == int(b.mask[i].sum()), f'{n} frames vs official {ref.shape[0]}'
            worst = max(worst, relative(a.embeddings[i, :n], ref))
            full = (lms.shape[-1] // 208) * 13  # frames from windows with no padding
            if full:
                worst_full = max(worst_full, relative(b.embeddings[i, :full], ref[:full]))
            if full < n:
                worst_last = max(worst_last, relative(b.embeddings[i, full:n], ref[full:]))
    return worst, worst_full, worst_last


def _front_end(rate: int) -> dict:
    from evar.models.m2d import FRONT_ENDS

    return FRONT_ENDS['16k' if rate == 16000 else '32k']


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--m2d_repo', required=True, help='checkout of github.com/nttcslab/m2d')
    parser.add_argument('--msm_mae_repo', required=True, help='checkout of nttcslab/msm-mae with models_mae.py patched')
    parser.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data'))
    args = parser.parse_args()

    import numpy as np
    import torch

    np.float = float  # facebookresearch/mae's pos_embed.py uses the alias removed in numpy 1.24
    torch.set_num_threads(2)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(args.m2d_repo) / 'examples'))
    sys.path.insert(0, args.msm_mae_repo)
    import portable_m2d
    from msm_mae import runtime as msm_runtime

    files = find_clips(Path(args.data))
    print('clips:', [str(f) for f in files], '+ a 14.5 s concatenation')
    clips16, clips32 = load_clips(files, 16000), load_clips(files, 32000)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec16, m2d16 = compare_m2d(portable_m2d, 'm2d_vit_base-80x608p16x16-parity', 16000, clips16, work)
        spec32, m2d32 = compare_m2d(portable_m2d, 'm2d_vit_base-80x208p16x16p32k-parity', 32000, clips32, work)
        _, m2d_layer = compare_m2d(portable_m2d, 'm2d_vit_base-80x208p16x16p32k-parity', 32000, clips32, work, layer=5)
        _, m2d_flat = compare_m2d(portable_m2d, 'm2d_vit_base-80x208p16x16p32k-parity', 32000, clips32, work,
                                  flat=True)
        msm, msm_full, msm_last = compare_msm_mae(msm_runtime, clips16, work, use_cls=False)
        msm_cls, _, _ = compare_msm_mae(msm_runtime, clips16, work, use_cls=True)
    print(f'log-mel max |diff|: 16 kHz {spec16:.1e}, 32 kHz {spec32:.1e}')
    print(f'M2D 80x608p16x16 (16 kHz), last layer stacked: max relative diff {m2d16:.1e}')
    print(f'M2D 80x208p16x16p32k (32 kHz): {m2d32:.1e}; layer 6 of 12: {m2d_layer:.1e}; flat_features {m2d_flat:.1e}')
    print(f'MSM-MAE 80x208p16x16, attend_padding true: no [CLS] {msm:.1e}, with [CLS] {msm_cls:.1e}')
    print(f'MSM-MAE default key mask: whole windows {msm_full:.1e}; last, partly padded window {msm_last:.1e} '
          f'(expected to differ: the official attends to the zero padding)')


if __name__ == '__main__':
    main()
