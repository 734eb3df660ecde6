"""Prints EVAR's Dasheng clip embeddings for tests/test_dasheng_evar.py: EVAR's own wrapper (`ar_dasheng.AR_Dasheng`
of nttcslab/eval-audio-repr, built from its config/dasheng.yaml) on a small seeded Dasheng whose hub folder is made
here by the hub code (jimbozhang/hf_transformers_custom_model_dasheng, the source of mispeech/dasheng-*'s
trust_remote_code files: no hub access is needed). The weights come from `seeded_state`, which the test runs too,
so both sides hold the same tensors. Run in EVAR's environment (see benchmarks/parity_evar.py; transformers, einops,
torchaudio's Python front end), from evar's root:

    /tmp/venv_evarref/bin/python benchmarks/evar_dasheng_values.py --evar_ref /tmp/evar_ref \\
        --hub_code /path/to/hf_transformers_custom_model_dasheng --index 0,7,19,33,42,50,58,63 --files F1 F2 ...

Each clip prints its L2 norm and its components at --index.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# The small encoder both sides build: Dasheng's 64 x 4 patches and 1008-frame windows, 64-d, 2 blocks, 4 heads.
SIZES = {'embed_dim': 64, 'depth': 2, 'num_heads': 4}


def seeded_state(shapes: dict) -> dict:
    """A Dasheng state dict under the official (Zenodo) key names for `shapes` {key: shape}, drawn in sorted-key order
    from torch.Generator seed 0: the init BN's running statistics on the log-mel dB scale (mean -40 +- 10, variance
    150-300), LayerNorm / BatchNorm weights 1 + N(0, 0.1), every other tensor N(0, 0.05); num_batches_tracked 0.
    Reproducible on any CPU (torch.randn on a seeded CPU generator)."""
    import torch

    g = torch.Generator().manual_seed(0)
    state = {}
    for key in sorted(shapes):
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(0)
            continue
        x = torch.randn(tuple(shapes[key]), generator=g)
        if key == 'init_bn.1.running_mean':
            x = -40.0 + 10.0 * x
        elif key == 'init_bn.1.running_var':
            x = 150.0 + 50.0 * x.abs()
        elif key.endswith('weight') and len(shapes[key]) == 1:  # LayerNorm and BatchNorm scales
            x = 1.0 + 0.1 * x
        else:
            x = 0.05 * x
        state[key] = x
    return state


def dasheng_hub_classes(checkout: Path, work: Path) -> tuple:
    """(DashengConfig, DashengModel, DashengFeatureExtractor) of the hub code (a jimbozhang/hf_transformers_custom_model_
    dasheng checkout: its dasheng_model package, copied to `work` and imported from there), registered for the Auto
    classes, so that save_pretrained writes a trust_remote_code folder as mispeech/dasheng-* on the hub is."""
    import shutil

    shutil.copytree(checkout / 'dasheng_model', work / 'dasheng_model')
    sys.path.insert(0, str(work))
    from dasheng_model.configuration_dasheng import DashengConfig
    from dasheng_model.feature_extraction_dasheng import DashengFeatureExtractor
    from dasheng_model.modeling_dasheng import DashengModel

    DashengConfig.register_for_auto_class()
    DashengModel.register_for_auto_class('AutoModel')
    DashengFeatureExtractor.register_for_auto_class('AutoFeatureExtractor')
    return DashengConfig, DashengModel, DashengFeatureExtractor


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--evar_ref', required=True, help='EVAR exported at 88ba772')
    parser.add_argument('--hub_code', required=True, help='a jimbozhang/hf_transformers_custom_model_dasheng checkout')
    parser.add_argument('--data', default=str(Path(__file__).resolve().parents[2] / 'shared' / 'data'))
    parser.add_argument('--files', nargs='+', required=True, help='16 kHz clips, relative to --data')
    parser.add_argument('--index', required=True, help='comma-separated embedding components to print')
    args = parser.parse_args()

    import soundfile as sf
    import torch

    torch.set_num_threads(2)
    sys.path.insert(0, args.evar_ref)
    from evar.ar_dasheng import AR_Dasheng
    from evar.common import complete_cfg
    from evar.utils import load_yaml_config

    index = [int(i) for i in args.index.split(',')]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config, model_class, extractor_class = dasheng_hub_classes(Path(args.hub_code), work)
        model = model_class(config('dasheng-base', **SIZES))
        shapes = {k[len('encoder.'):]: tuple(v.shape) for k, v in model.state_dict().items()}
        model.load_state_dict({f'encoder.{k}': v for k, v in seeded_state(shapes).items()})
        model.save_pretrained(str(work / 'hub'))
        extractor_class().save_pretrained(str(work / 'hub'))
        cfg = load_yaml_config(Path(args.evar_ref) / 'config' / 'dasheng.yaml')
        cfg = complete_cfg(cfg, f'model_name={work / "hub"},feature_d={SIZES["embed_dim"]}', no_id=True)
        ar = AR_Dasheng(cfg).eval()
        for name in args.files:
            wav, rate = sf.read(str(Path(args.data) / name), dtype='float32')
            assert rate == 16000, f'{name}: {rate} Hz, expected 16000'
            with torch.inference_mode():
                emb = ar(torch.from_numpy(wav)[None])[0].double()
            print(f"'{name}': ({float(emb.norm())!r}, {[float(emb[i]) for i in index]!r}),")


if __name__ == '__main__':
    main()
