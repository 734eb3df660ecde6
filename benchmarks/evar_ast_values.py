"""Prints EVAR's AST clip embeddings for tests/test_ast_evar.py: EVAR's own wrapper (`ar_ast.AR_AST` of
nttcslab/eval-audio-repr, built from its config/ast.yaml), which runs the original AST code (github.com/YuanGongND/ast
with EVAR's external/ast_models.patch, on timm 0.4.5), on a small seeded AST whose checkpoint is written here in the
original layout. The weights come from `seeded_state`, which the test runs too (converted by `to_transformers`), so
both sides hold the same tensors. Run in EVAR's environment (see benchmarks/parity_evar.py) with the AST checkout and
timm 0.4.5 on the path, from evar's root:

    PYTHONPATH=<ast_site>:<ast_src> /tmp/venv_evarref/bin/python benchmarks/evar_ast_values.py \\
        --evar_ref /tmp/evar_ref --norm_stats -6.5 4.0 --index 0,100,200,300,400,500,600,700 --files F1 F2 ... \\
        --long 12

(<ast_site>: `pip install --no-deps --target <ast_site> timm==0.4.5 wget`; <ast_src>/external/ast: the AST checkout
with EVAR's patch applied.) EVAR's network is sized to the task's unit, so it is built anew for each clip with the
clip's length as the unit (no padding, no crop). AR_AST always builds DeiT-base (768-d, 12 blocks; its position
embeddings are reshaped as 12 x 101 x 768) and loads the checkpoint with strict=False: the blocks past DEPTH are
dropped from EVAR's built network, and every tensor loaded is checked against the checkpoint. --norm_stats replaces
the training-split statistics of EVAR's `precompute` (the input is (fbank - mean) / (2 std)). Each clip prints its L2
norm and its components at --index; --long SEC also embeds the clips concatenated (repeated) and cut to SEC seconds.
"""

from __future__ import annotations

import argparse
import collections.abc
import sys
import tempfile
import types
from pathlib import Path

DEPTH = 1  # transformer blocks of the small AST (width, heads and MLP stay DeiT-base's: EVAR's code fixes them)
NORM_EPS = 1e-6  # timm's LayerNorm eps (Hugging Face's conversion of the AudioSet checkpoint says 1e-12)


def seeded_state(shapes: dict) -> dict:
    """An AST state dict in the original checkpoint layout (`module.v.*`, `module.mlp_head.*`) for `shapes`
    {key: shape}, drawn in sorted-key order from torch.Generator seed 0: LayerNorm scales 1 + N(0, 0.1), every other
    tensor N(0, 0.05). Reproducible on any CPU (torch.randn on a seeded CPU generator)."""
    import torch

    g = torch.Generator().manual_seed(0)
    state = {}
    for key in sorted(shapes):
        x = torch.randn(tuple(shapes[key]), generator=g)
        state[key] = 1.0 + 0.1 * x if key.endswith('weight') and len(shapes[key]) == 1 else 0.05 * x
    return state


HF_BLOCK_NAMES = {'norm1': 'layernorm_before', 'norm2': 'layernorm_after', 'attn.proj': 'attention.output.dense',
                  'mlp.fc1': 'intermediate.dense', 'mlp.fc2': 'output.dense'}
HF_TOP_NAMES = {'v.cls_token': 'embeddings.cls_token', 'v.dist_token': 'embeddings.distillation_token',
                'v.pos_embed': 'embeddings.position_embeddings',
                'v.patch_embed.proj.weight': 'embeddings.patch_embeddings.projection.weight',
                'v.patch_embed.proj.bias': 'embeddings.patch_embeddings.projection.bias',
                'v.norm.weight': 'layernorm.weight', 'v.norm.bias': 'layernorm.bias'}


def to_transformers(state: dict) -> dict:
    """An original AST state dict (keys with or without `module.`) under transformers' ASTForAudioClassification
    names, the mapping of its convert_audio_spectrogram_transformer_original_to_pytorch script: `v.blocks.<i>` ->
    `encoder.layer.<i>` with the fused qkv split into query / key / value, the final norm -> `layernorm`, mlp_head ->
    `classifier`; DeiT's ImageNet heads (`v.head`, `v.head_dist`), which AST never uses, are dropped."""
    out = {}
    for key, value in state.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key.startswith(('v.head.', 'v.head_dist.')):
            continue
        if key.startswith('mlp_head.'):
            head = {'0': 'layernorm', '1': 'dense'}[key.split('.')[1]]
            out[f'classifier.{head}.{key.split(".")[-1]}'] = value
        elif key in HF_TOP_NAMES:
            out[f'audio_spectrogram_transformer.{HF_TOP_NAMES[key]}'] = value
        else:  # v.blocks.<i>.<module>.<weight|bias>
            _, _, i, rest = key.split('.', 3)
            module, kind = rest.rsplit('.', 1)
            prefix = f'audio_spectrogram_transformer.encoder.layer.{i}'
            if module == 'attn.qkv':
                d = value.shape[0] // 3
                for j, part in enumerate(('query', 'key', 'value')):
                    out[f'{prefix}.attention.attention.{part}.{kind}'] = value[j * d:(j + 1) * d]
            else:
                out[f'{prefix}.{HF_BLOCK_NAMES[module]}.{kind}'] = value
    return out


def timm045_stand_ins() -> None:
    """What timm 0.4.5 imports and a ViT never runs: torchvision's transforms (timm.data's image pipelines; torchvision
    does not load beside the reference venv's torch) and torch._six (gone from torch 2: container_abcs and friends)."""
    def unavailable(*args, **kwargs):
        raise RuntimeError('torchvision stand-in: not available in the parity run')

    class Stub(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith('__'):
                raise AttributeError(name)
            return unavailable

    parent = None
    for name in ('torchvision', 'torchvision.transforms', 'torchvision.transforms.functional'):
        module = sys.modules.setdefault(name, Stub(name))
        if parent is not None:
            setattr(parent, name.rsplit('.', 1)[1], module)
        parent = module
    six = types.ModuleType('torch._six')
    six.container_abcs, six.string_classes, six.int_classes = collections.abc, (str, bytes), int
    sys.modules.setdefault('torch._six', six)


def original_shapes(depth: int = DEPTH) -> dict:
    """{key: shape} of the original AudioSet AST checkpoint (DeiT-base: 768-d, 12 x 101 patches of 1024 frames with
    strides 10, 527 labels; DeiT's unused 1000-class heads included) with `depth` blocks, `module.` keys. `main` checks
    it against the original ASTModel's own state dict."""
    d, mlp = 768, 3072
    shapes = {'v.cls_token': (1, 1, d), 'v.dist_token': (1, 1, d), 'v.pos_embed': (1, 2 + 12 * 101, d),
              'v.patch_embed.proj.weight': (d, 1, 16, 16), 'v.patch_embed.proj.bias': (d,),
              'v.norm.weight': (d,), 'v.norm.bias': (d,), 'v.head.weight': (1000, d), 'v.head.bias': (1000,),
              'v.head_dist.weight': (1000, d), 'v.head_dist.bias': (1000,), 'mlp_head.0.weight': (d,),
              'mlp_head.0.bias': (d,), 'mlp_head.1.weight': (527, d), 'mlp_head.1.bias': (527,)}
    block = {'norm1.weight': (d,), 'norm1.bias': (d,), 'attn.qkv.weight': (3 * d, d), 'attn.qkv.bias': (3 * d,),
             'attn.proj.weight': (d, d), 'attn.proj.bias': (d,), 'norm2.weight': (d,), 'norm2.bias': (d,),
             'mlp.fc1.weight': (mlp, d), 'mlp.fc1.bias': (mlp,), 'mlp.fc2.weight': (d, mlp), 'mlp.fc2.bias': (d,)}
    for i in range(depth):
        shapes.update({f'v.blocks.{i}.{k}': v for k, v in block.items()})
    return {f'module.{k}': v for k, v in shapes.items()}


def check_shapes() -> None:
    """Asserts that `original_shapes(12)` is the original ASTModel's state dict (the AST checkout and timm 0.4.5
    importable)."""
    timm045_stand_ins()
    from external.ast.src.models import ASTModel

    model = ASTModel(label_dim=527, input_tdim=1024, imagenet_pretrain=False, audioset_pretrain=False, verbose=False)
    assert original_shapes(12) == {f'module.{k}': tuple(v.shape) for k, v in model.state_dict().items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--evar_ref', required=True, help='EVAR exported at 88ba772')
    parser.add_argument('--data', default=str(Path(__file__).resolve().parents[2] / 'shared' / 'data'))
    parser.add_argument('--files', nargs='+', required=True, help='16 kHz clips, relative to --data')
    parser.add_argument('--index', required=True, help='comma-separated embedding components to print')
    parser.add_argument('--norm_stats', nargs=2, type=float, required=True, help='fbank mean and std')
    parser.add_argument('--long', type=float, default=0.0, help='also the clips concatenated to this many seconds')
    args = parser.parse_args()

    import numpy as np
    import soundfile as sf
    import torch

    torch.set_num_threads(2)
    sys.path.insert(0, args.evar_ref)
    check_shapes()
    shapes = original_shapes()
    from evar.ar_ast import AR_AST
    from evar.common import complete_cfg
    from evar.utils import load_yaml_config

    index = [int(i) for i in args.index.split(',')]
    waves = {}
    for name in args.files:
        wav, rate = sf.read(str(Path(args.data) / name), dtype='float32')
        assert rate == 16000 and wav.ndim == 1, f'{name}: {rate} Hz, shape {wav.shape}; expected 16 kHz mono'
        waves[name] = wav
    if args.long:
        n = int(args.long * 16000)
        joined = np.concatenate(list(waves.values()))
        waves[f'long {args.long:g} s'] = np.tile(joined, -(-n // len(joined)))[:n]
    state = seeded_state(shapes)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / 'ast_small.pth'
        torch.save(state, path)
        cfg = complete_cfg(load_yaml_config(Path(args.evar_ref) / 'config' / 'ast.yaml'), f'weight_file={path}',
                           no_id=True)
        for name, wav in waves.items():
            cfg.unit_samples = len(wav)  # a task whose unit is this clip: EVAR neither pads nor crops it
            ar = AR_AST(cfg).eval()
            v = ar.backbone.v
            v.blocks = v.blocks[:DEPTH]
            loaded = {f'module.v.{k}': t for k, t in v.state_dict().items()}
            for key, tensor in loaded.items():
                if key != 'module.v.pos_embed' and not key.startswith('module.v.head'):
                    assert torch.equal(tensor, state[key]), f'{key} not loaded by EVAR'
            ar.norm_stats = torch.tensor(args.norm_stats)
            with torch.inference_mode():
                emb = ar(torch.from_numpy(wav)[None])[0].double()
            print(f"'{name}': ({float(emb.norm())!r}, {[float(emb[i]) for i in index]!r}),", flush=True)


if __name__ == '__main__':
    main()
