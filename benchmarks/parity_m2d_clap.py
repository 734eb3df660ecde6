"""Side-by-side parity check: evar's M2D-CLAP (evar/models/m2d_clap.py) against the official code, random weights,
real clips: the joint-space audio embedding, the text embedding and the linear-evaluation (backbone) embedding.

Official code (not part of evar; exported outside the project): github.com/nttcslab/m2d `examples/portable_m2d.py`
(f0c4128; needs timm, einops, nnAudio, transformers): `PortableM2D(weight_file, flat_features=True)` as the
publisher's M2D-CLAP examples build it, `encode_clap_audio` (mean of all patch tokens of the clip, then audio_proj),
`encode_clap_text` (the official GTETextEncoder / BertXEncoder classes, then text_proj) and `encode(...).mean(1)`
(EVAR's AR_M2D_CLAP.forward with flat_features: the linear-evaluation features). The hub text towers are replaced by
a random 2-layer BERT of GTE-base's width (768) with a character-level WordPiece vocabulary, saved with
save_pretrained; the official classes load that folder (their `clip_weight` argument), evar its `text_model` key.

Three checkpoints, seeded random weights saved in the official training container ({'model': encoder + CLAP heads +
target/predictor keys}) under official folder names, loaded by the official loader and strictly by evar:
  m2d_clap_vit_base-80x608p16x16-parity       the 2024 release's layout: MLP audio_proj, no text_proj, GTE pooling
  m2d_clap_vit_base-80x1001p16x16p16kpB-parity  a 1001-frame window (62 patch columns, 9 frames unused per window),
                                                a Linear text_proj and the BERT tower ([CLS] pooling), tag B
  m2d_clap_vit_base-80x1001p16x16p16kpBpTI-parity  the 2025 layout: semantic-token audio_proj (2 blocks), MLP
                                                text_proj, the BERT tower's weights inside the checkpoint (TI)
Clips: ESC-50 (5 s), RAVDESS (~3.5 s), a speech command (1 s) and a 14.5 s concatenation (3 windows of 608 frames,
2 of 1001), so chunking is exercised. The official runtime takes one clip at a time (its batches must be of equal
length); evar embeds all clips as one padded batch. The texts are embedded in one batch on both sides (padded).

EVAR's wrappers (eval-audio-repr 88ba772, evar/ar_m2d.py) are not run: AR_M2D_CLAP.encode_audio calls
`RuntimeM2D.project_audio`, and AR_M2D_CLAP_PORTABLE builds `PortableM2D(cfg=...)`; neither exists in any commit
of nttcslab/m2d (30 commits to f0c4128, 2025-09-19), so EVAR's zero-shot with m2d_clap.yaml cannot run against the
published runtime. Their text side is `encode_clap_text` (checked here) and their linear-evaluation side is AR_M2D's
with flat_features (benchmarks/parity_evar.py m2d_flat: 2.2e-07).

The reference venv has no torchvision, which timm imports at import time; a stand-in package (dummy classes, never
called by the ViT) is installed in sys.modules when torchvision cannot be imported. Run, e.g.:

    git --git-dir /work/.mirror/nttcslab+m2d/repo show HEAD:examples/portable_m2d.py > /tmp/m2d_ex/portable_m2d.py
    /tmp/venv_evarref/bin/python benchmarks/parity_m2d_clap.py --m2d_examples /tmp/m2d_ex

Seen on 2026-12-06 (torch 2.13.0 CPU, timm 1.0.31, nnAudio 0.3.4, transformers 4.46.3), max relative difference
over the clips (max|evar - official| / max|official| per clip) and over the texts:
    m2d_clap_vit_base-80x608p16x16-parity: joint-space audio 4.2e-07, text 0.0e+00, backbone (linear evaluation)
        3.0e-07
    m2d_clap_vit_base-80x1001p16x16p16kpB-parity: joint-space audio 3.2e-07, text 0.0e+00, backbone 3.0e-07
    m2d_clap_vit_base-80x1001p16x16p16kpBpTI-parity: joint-space audio 7.5e-07, text 0.0e+00, backbone 3.0e-07
    (the joint embeddings of two different clips differ by 0.34 to 0.41 relative: not a dead model; the text
    embeddings are equal to the last bit: the same tokenizer files and BERT on both sides)
About 5 minutes on 2 busy cores.
"""

import argparse
import functools
import importlib.abc
import importlib.machinery
import sys
import tempfile
import types
from pathlib import Path

from parity_common import padded, relative
from parity_m2d import find_clips, load_clips, perturb

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ['dog barking', 'the sound of rain can be heard', 'a man speaks while a car passes by, then silence.', 'x']


def install_torchvision_stand_in() -> None:
    """A torchvision stand-in for timm's import-time references (classes and enum members that are never used by
    the ViT); only when the real package cannot be imported."""
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass

    class Meta(type):
        def __getattr__(cls, name):
            if name.startswith('__'):
                raise AttributeError(name)
            return name

    class Dummy(metaclass=Meta):
        def __init__(self, *args, **kwargs):
            pass

    class Stub(types.ModuleType):
        __path__ = []

        def __getattr__(self, name):
            if name.startswith('__'):
                raise AttributeError(name)
            return type(name, (Dummy,), {})

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname.split('.')[0] == 'torchvision':
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec):
            return Stub(spec.name)

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, Finder())


def write_text_tower(folder: Path, seed: int = 3) -> Path:
    """A random 2-layer BERT of width 768 (GTE-base's) with a character-level WordPiece vocabulary."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    chars = list('abcdefghijklmnopqrstuvwxyz0123456789') + list("'-,.")
    vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + chars + [f'##{c}' for c in chars]
    (folder / 'vocab.txt').write_text('\n'.join(vocab) + '\n')
    transformers.BertTokenizerFast(str(folder / 'vocab.txt'), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=768, num_hidden_layers=2,
                                     num_attention_heads=12, intermediate_size=3072)
    transformers.BertModel(config).eval().save_pretrained(folder)
    return folder


def write_checkpoint(portable, folder: str, work: Path, heads: str) -> Path:
    """Seeded random encoder + CLAP heads in the official training container under `folder`. heads: '2024' (MLP
    audio_proj only), 'linear' (+ a Linear text_proj) or '2025' (the semantic-token audio_proj of two blocks, an MLP
    text_proj and a BERT of other weights under text_encoder.text_encoder.*, as a `TI` folder holds)."""
    import torch

    input_size = [int(v) for v in folder.split('-')[1].split('p')[0].split('x')]
    torch.manual_seed(0)
    backbone = portable.LocalViT(in_chans=1, img_size=input_size, patch_size=[16, 16], embed_dim=768, depth=12,
                                 num_heads=12, mlp_ratio=4,
                                 norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6))
    backbone.audio_proj = portable.add_semantic_audio_proj(2, 768) if heads == '2025' else \
        portable.get_MLP_projector(768, 768, 768)
    if heads != '2024':
        backbone.text_proj = portable.get_MLP_projector(768, 768, 768) if heads == '2025' else torch.nn.Linear(768, 768)
    perturb(backbone, 1)
    state = dict(backbone.state_dict())
    if heads == '2025':
        import transformers

        text = transformers.AutoModel.from_pretrained(write_text_tower(work / 'text_ti', seed=4))
        state.update({f'text_encoder.text_encoder.{k}': v for k, v in text.state_dict().items()})
    state.update({'target_norm.weight': torch.ones(768), 'decoder_pred.weight': torch.zeros(4, 768),
                  'logit_scale': torch.tensor(2.66)})
    path = work / folder / 'checkpoint-300.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'model': state, 'epoch': 300, 'args': argparse.Namespace(input_size=input_size)}, path)
    return path


def compare(portable, folder: str, clips, work: Path, text_folder: Path, heads: str) -> dict:
    """Official PortableM2D vs evar's m2d_clap on `clips` and TEXTS; returns the max relative differences."""
    import torch

    from evar.models import create_model

    path = write_checkpoint(portable, folder, work, heads)
    official = portable.PortableM2D(str(path), flat_features=True).eval()
    tower = portable.BertXEncoder if 'kpB' in folder else portable.GTETextEncoder
    official.text_encoder = tower(str(text_folder))
    if official.cfg.text_encoder_weight:  # the official get_text_encoder's loading of a `TI` checkpoint's tower
        weights = torch.load(official.cfg.text_encoder_weight, weights_only=False, map_location='cpu')['model']
        official.text_encoder.load_state_dict(portable.extract_weight(weights, 'text_encoder.'))
    joint = create_model('m2d_clap', weight_file=str(path), output='audio_embeds', text_model=str(text_folder)).eval()
    backbone = create_model('m2d_clap', weight_file=str(path)).eval()
    out = {'audio_embeds': 0.0, 'backbone': 0.0}
    with torch.inference_mode():
        wav, lengths = padded(clips)
        ours = {'audio_embeds': joint.embed(wav, lengths), 'backbone': backbone.embed(wav, lengths)}
        for i, clip in enumerate(clips):
            ref = {'audio_embeds': official.encode_clap_audio(clip[None])[0],
                   'backbone': official.encode(clip[None]).mean(1)[0]}
            for k in out:
                out[k] = max(out[k], relative(ours[k][i], ref[k]))
        ref_text = official.encode_clap_text(TEXTS)
        ref_text = ref_text / ref_text.norm(dim=-1, keepdim=True)  # EVAR's compute_similarity normalises
        out['text'] = relative(joint.encode_text(TEXTS), ref_text)
        out['between clips'] = relative(ours['audio_embeds'][0], ours['audio_embeds'][1])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--m2d_examples', required=True, help='folder with nttcslab/m2d examples/portable_m2d.py')
    parser.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data'))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    install_torchvision_stand_in()
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, args.m2d_examples)
    import portable_m2d

    files = find_clips(Path(args.data))
    print('clips:', [str(f) for f in files], '+ a 14.5 s concatenation')
    clips = load_clips(files, 16000)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        text_folder = write_text_tower(work / 'text')
        for folder, heads in (('m2d_clap_vit_base-80x608p16x16-parity', '2024'),
                              ('m2d_clap_vit_base-80x1001p16x16p16kpB-parity', 'linear'),
                              ('m2d_clap_vit_base-80x1001p16x16p16kpBpTI-parity', '2025')):
            d = compare(portable_m2d, folder, clips, work, text_folder, heads)
            print(f'{folder}: joint-space audio {d["audio_embeds"]:.1e}, text {d["text"]:.1e}, backbone (linear '
                  f'evaluation) {d["backbone"]:.1e}; two clips differ by {d["between clips"]:.2f}')


if __name__ == '__main__':
    main()
