"""Side-by-side parity check of evar's `wavcaps` (HTSAT-BERT, or CNN14-BERT with --encoder cnn14) against (a) the
official code, XinhaoMei/WavCaps retrieval/models/ase_model.py `ASE`, run as the official zero-shot script runs it
(a clip zero-padded to 10 s, `encode_audio`, `encode_text`), and (b) EVAR's wrapper `evar/ar_wavcaps.py`
`AR_WavCaps` at 88ba772 (10 s chunks, each zero-padded, `encode_audio` averaged over chunks; `encode_text`,
normalised as EVAR's `compute_similarity` does). On the official side a clip longer than 10 s is cut into the same
10 s chunks (HTS-AT cannot take more) and the chunk embeddings are averaged, as EVAR does.

Weights: the official `ASE` built from the official settings (settings/inference.yaml) with seeded random weights,
every learned tensor perturbed (so a swapped name would show) and random BatchNorm statistics, saved as the official
train.py saves it ({'model': state_dict(), 'config': settings, ...}); evar loads that file strictly. Sizes are the
releases': HTS-AT (spec_size 256, width 96, depths 2-2-6-2), projections 768 -> 1024 -> 1024, and a 2-layer BERT of
width 768 (the real text tower has 12 layers; same code path) with a character tokenizer saved as a local folder (no
hub access here; every side loads the same folder, so the tokenizer itself is not compared).
Clips are real (../shared; parity_evar.load_clips), resampled to 32 kHz once (soxr) and fed to all sides: an ESC-50
clip (5 s), a RAVDESS sentence (~3.3 s), a speech command (1 s) and a 20.5 s concatenation (3 chunks, the last
padded). Printed: max and median over clips (captions) of the relative difference max|ours - ref| / max|ref|.

The reference sides run in a second interpreter (EVAR's package is also named `evar`) that has torchlibrosa and
transformers, exchanging .npy files; the official code's training-only imports (wandb, loguru, sentence_transformers
in tools/, ruamel.yaml) are stubbed. Sources exported as plain folders: WavCaps (a5a9649; only retrieval/ is needed)
and EVAR (88ba772):

    git --git-dir /work/.mirror/XinhaoMei+WavCaps/repo archive HEAD retrieval | tar -x -C /tmp/wavcaps/wc
    python benchmarks/parity_wavcaps.py --wavcaps /tmp/wavcaps/wc --evar_ref /tmp/evar_ref \\
        --ref_python /tmp/venv_evarref/bin/python [--encoder cnn14]

Seen on 2026-12-06 (reference venv /tmp/venv_evarref: torch 2.13.0 CPU, transformers 4.46.3, torchlibrosa 0.1.0,
librosa 0.11; evar venv: torch 2.13 CPU, transformers 5.25), clips of 5.0, 3.3, 1.0 and 20.5 s, 5 captions:
    audio vs official: max 3.3e-07 / median 2.5e-07 relative over 4
    text vs official: max 0.0e+00 / median 0.0e+00 relative over 5
    audio vs evar_ref: max 3.3e-07 / median 2.5e-07 relative over 4
    text vs evar_ref: max 0.0e+00 / median 0.0e+00 relative over 5
    between two clips (ours): 0.16 relative, between two captions 0.17
--encoder cnn14 (the official Cnn14, every BatchNorm's statistics random; same clips and captions):
    audio vs official: max 3.5e-07 / median 2.6e-07 relative over 4
    text vs official: max 0.0e+00 / median 0.0e+00 relative over 5
    audio vs evar_ref: max 3.5e-07 / median 2.6e-07 relative over 4
    text vs evar_ref: max 0.0e+00 / median 0.0e+00 relative over 5
    between two clips (ours): 0.05 relative, between two captions 0.19
EVAR's wrapper and the official code compute the same thing here (zero-padded 10 s chunks, averaged), so
config/wavcaps.yaml gives both; evar's float64 STFT vs torchlibrosa's float32 DFT-by-convolution is the audio gap.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SR = 32000
CAPTIONS = ['a dog barks', 'rain falls on a tin roof while a man is talking nearby', 'x',
            'the sound of an airplane', 'someone says yes']
BERT = dict(vocab_size=64, hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072,
            max_position_embeddings=512)


def write_inputs(work: Path, data: Path) -> None:
    """The text folder (BERT config + character tokenizer), the 32 kHz waves (wave<i>.npy: parity_evar's clips) and
    the captions."""
    import numpy as np

    from parity_evar import load_clips

    sys.path.insert(0, str(ROOT / 'tests'))
    from helpers.tiny_wavcaps import write_text_folder

    write_text_folder(work / 'text', **BERT)
    for i, wave in enumerate(load_clips(data, SR)):
        np.save(work / f'wave{i}.npy', wave)
    (work / 'captions.json').write_text(json.dumps(CAPTIONS))


def ours(work: Path) -> tuple:
    """evar's clip embeddings [clips, 1024] (one padded batch) and text embeddings [captions, 1024]."""
    import numpy as np
    import torch

    from evar.models import create_model

    model = create_model('wavcaps', weight_file=str(work / 'ASE-random.pt'), text_model=str(work / 'text'))
    waves = [np.load(p) for p in sorted(work.glob('wave*.npy'))]
    batch = torch.zeros(len(waves), max(len(w) for w in waves))
    for i, w in enumerate(waves):
        batch[i, :len(w)] = torch.from_numpy(w)
    with torch.inference_mode():
        audio = model.eval().embed(batch, torch.tensor([len(w) for w in waves]))
        text = model.encode_text(json.loads((work / 'captions.json').read_text()))
    return audio.numpy(), text.numpy()


# ----------------------------------------------------------------------------------------------------------------
# Reference side (run with --side ref in the reference venv).

def _stub_training_imports() -> None:
    """Stand-ins for modules the official files import but inference never uses (tools/losses.py and tools/utils.py
    pull wandb, loguru and sentence_transformers; htsat.py imports ruamel.yaml for its __main__)."""
    for name in ('tools', 'tools.losses', 'tools.utils', 'ruamel', 'ruamel.yaml'):
        sys.modules[name] = types.ModuleType(name)
    sys.modules['tools.losses'].AudioTextContrastiveLoss = sys.modules['tools.losses'].NTXent = object
    sys.modules['tools.utils'].remove_grad = lambda model: None


def _local_text_tower(folder: str) -> None:
    """The official TextEncoder looks its hub id up in a table (model class, tokenizer class, width): the local folder
    is added, with a model class that builds BERT from the folder's config (the checkpoint's weights replace it)."""
    import transformers
    from models import text_encoder

    class LocalBert:
        @staticmethod
        def from_pretrained(name, add_pooling_layer=False):
            config = transformers.BertConfig.from_pretrained(name)
            return transformers.BertModel(config, add_pooling_layer=add_pooling_layer)

    text_encoder.MODELS[folder] = (LocalBert, transformers.PreTrainedTokenizerFast, BERT['hidden_size'])


def reference(args) -> None:
    import numpy as np
    import torch
    from parity_common import randomise_batchnorm

    work = Path(args.work)
    retrieval = str(Path(args.wavcaps) / 'retrieval')
    sys.path[:0] = [retrieval, args.wavcaps, args.evar_ref]
    _stub_training_imports()
    _local_text_tower(str(work / 'text'))
    from models.ase_model import ASE

    # The official settings (settings/inference.yaml), the text tower named by the local folder.
    config = {'embed_size': 1024, 'temp': 0.07, 'embed_regularization': True,
              'audio_args': {'sr': SR, 'n_fft': 1024, 'hop_length': 320, 'f_min': 50, 'f_max': 14000, 'n_mels': 64,
                             'max_length': 30, 'mono': True},
              'audio_encoder_args': ({'type': 'cnn', 'model': 'Cnn14'} if args.encoder == 'cnn14' else
                                     {'type': 'transformer', 'model': 'htsat'}) | {'pretrained': False, 'freeze': False},
              'text_encoder_args': {'type': str(work / 'text'), 'freeze': False},
              'training': {'spec_augmentation': True, 'dropout': 0.2}}
    torch.manual_seed(0)
    official = ASE(config)
    with torch.no_grad():  # every learned tensor perturbed (a swapped name would show), BN statistics random
        for name, p in official.named_parameters():
            if 'audio_feats_extractor' not in name:  # torchlibrosa's STFT and mel constants stay
                p.add_(0.02 * torch.randn_like(p))
        randomise_batchnorm(official.audio_encoder.audio_enc, torch.Generator().manual_seed(1))
        bn0 = official.audio_encoder.audio_enc.bn0
        bn0.running_mean.copy_(torch.randn(64) * 5 - 20)
        bn0.running_var.copy_(torch.rand(64) * 150 + 50)
    # As the official train.py saves a model (the 'config' entry is what EVAR's wrapper reads).
    torch.save({'model': official.state_dict(), 'config': config, 'epoch': 1}, work / 'ASE-random.pt')
    official.eval()
    captions = json.loads((work / 'captions.json').read_text())
    waves = [torch.from_numpy(np.load(p)) for p in sorted(work.glob('wave*.npy'))]
    clip = SR * 10
    with torch.no_grad():
        rows = []
        for wave in waves:
            chunks = [torch.nn.functional.pad(c, (0, clip - len(c)))[None] for c in torch.split(wave, clip)]
            rows.append(torch.cat([official.encode_audio(c) for c in chunks]).mean(0))
        np.save(work / 'official_audio.npy', torch.stack(rows).numpy())
        np.save(work / 'official_text.npy', official.encode_text(captions).numpy())

        import yaml
        from easydict import EasyDict
        from evar.ar_wavcaps import AR_WavCaps

        cfg = EasyDict(yaml.safe_load((Path(args.evar_ref) / 'config' / 'wavcaps.yaml').read_text()))
        cfg.weight_file = str(work / 'ASE-random.pt')
        wrapper = AR_WavCaps(cfg).eval()
        audio = torch.cat([wrapper.encode_audio(w[None]) for w in waves])
        text = wrapper.encode_text(captions)
        np.save(work / 'evar_ref_audio.npy', audio.numpy())
        np.save(work / 'evar_ref_text.npy', torch.nn.functional.normalize(text, dim=-1).numpy())


def _report(name: str, a, b) -> None:
    import numpy as np

    rel = [float(np.abs(x - y).max() / np.abs(y).max()) for x, y in zip(a, b)]
    print(f'{name}: max {max(rel):.1e} / median {float(np.median(rel)):.1e} relative over {len(rel)}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--wavcaps', required=True, help='export of github.com/XinhaoMei/WavCaps (holding retrieval/)')
    parser.add_argument('--evar_ref', default='/tmp/evar_ref', help="export of EVAR (nttcslab/eval-audio-repr)")
    parser.add_argument('--ref_python', default='/tmp/venv_evarref/bin/python',
                        help='python of a venv with torch, transformers, torchlibrosa, nnAudio, easydict, pyyaml')
    parser.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data'), help='the shared real clips')
    parser.add_argument('--encoder', default='htsat', choices=['htsat', 'cnn14'],
                        help='the audio encoder of the random ASE (HTSAT-BERT or CNN14-BERT releases)')
    parser.add_argument('--side', default='ours', choices=['ours', 'ref'], help=argparse.SUPPRESS)
    parser.add_argument('--work', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == 'ref':
        reference(args)
        return
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_inputs(work, Path(args.data))
        subprocess.run([args.ref_python, __file__, '--side', 'ref', '--work', tmp, '--wavcaps', args.wavcaps,
                        '--evar_ref', args.evar_ref, '--encoder', args.encoder], check=True, cwd=tmp)
        audio, text = ours(work)
        for ref in ('official', 'evar_ref'):
            _report(f'audio vs {ref}', audio, np.load(work / f'{ref}_audio.npy'))
            _report(f'text vs {ref}', text, np.load(work / f'{ref}_text.npy'))
        between = np.abs(audio[0] - audio[1]).max() / np.abs(audio[1]).max()
        words = np.abs(text[0] - text[1]).max() / np.abs(text[1]).max()
        print(f'between two clips (ours): {between:.2f} relative, between two captions {words:.2f}; clip lengths '
              f'{[round(len(np.load(p)) / SR, 2) for p in sorted(work.glob("wave*.npy"))]} s')


if __name__ == '__main__':
    main()
