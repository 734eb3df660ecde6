"""Side-by-side parity check of evar's `laionclap` against (a) the official laion_clap package (PyPI laion_clap
1.1.7, github.com/LAION-AI/CLAP) and (b) EVAR's wrapper `evar/ar_laionclap.py` (nttcslab/eval-audio-repr 88ba772),
on the same seeded random weights saved in laion_clap's checkpoint layout and real clips from ../shared: ESC-50
(5 s), a RAVDESS sentence (~3.5 s), a speech command (1 s) and a 20.5 s concatenation (longer than the 10 s
window), resampled to 48 kHz once (soxr) and given to both sides as the same float32 waves.

The reference side runs in a second interpreter (EVAR's package is also called `evar`, and laion_clap needs
transformers 4.x): the reference venv plus laion_clap installed with `pip install --no-deps --target <laion_pkg>
laion_clap==1.1.7`. laion_clap imports packages that its inference never calls (torchvision for image transforms
and FrozenBatchNorm2d, h5py, webdataset, braceexpand, ftfy, wget): they are stubbed, except torchvision's Resize,
used by the fusion front end, which is given torchvision's own tensor computation (bilinear interpolation with
antialiasing, torchvision >= 0.17). There is no hub access, so `RobertaModel.from_pretrained('roberta-base')` and
`RobertaTokenizer.from_pretrained('roberta-base')` are redirected to a seeded random 2-layer RoBERTa of
roberta-base's width (768, which laion_clap's text projection requires) and tests/helpers/tiny_models.py's
character-level tokenizer, saved with the config in a folder that evar's `text_model` reads. The audio towers are
laion_clap's real HTSAT-tiny (unfused and fused, aff_2d) with every trainable tensor perturbed and BatchNorm
statistics randomised.

Compared, printing max and median over clips of max|ours - ref| / max|ref|:
- unfused audio: each 10 s piece of every clip (the 20.5 s clip has 3) against `get_audio_embedding_from_data(
  [piece], use_tensor=True)` (official) and against EVAR's `AR_LAIONCLAP.encode_audio(piece[None])`;
- text: `get_text_embedding(captions, use_tensor=True)` and EVAR's `encode_text` (captions up to 120 characters,
  so truncation to 77 tokens is exercised);
- fused audio: every clip against `get_audio_embedding_from_data([clip], use_tensor=True)` of the fused module,
  with numpy's `random.choice` (laion_clap's draw of the three chunk starts) replaced by the middle element, evar's
  deterministic choice;
- long clips: laion_clap / EVAR embed a clip longer than 10 s from one random crop (unfused) or random chunks
  (fused); the script prints the cosine of evar's deterministic embedding with 8 seeded draws of the reference, and
  the cosines between the draws themselves.

    python benchmarks/parity_laionclap.py --ref_python /tmp/venv_evarref/bin/python --laion_pkg /tmp/ref_extra_laion \\
        --evar_ref /tmp/laion/evar_ref

(--evar_ref: a copy of EVAR at 88ba772 that this script may write into: EVAR's wrapper ignores weight_file and
loads `<evar_ref>/evar/630k-audioset-best.pt`, where the random checkpoint is put.)

Seen on 2026-12-06 (evar venv torch 2.13 CPU, transformers 5.25; reference venv torch 2.13.0+cpu, transformers
4.46.3, torchlibrosa 0.1.0, torchaudio 2.11.1; laion_clap 1.1.7 from PyPI):
    unfused 10 s pieces vs official: max 3.1e-07, median 2.8e-07 over 6
    unfused 10 s pieces vs EVAR's wrapper: max 3.1e-07, median 2.8e-07 over 6
    text vs official: max 4.0e-07, median 3.5e-07 over 4
    text vs EVAR's wrapper: max 4.0e-07, median 3.5e-07 over 4
    fused clips vs official (middle chunks): max 3.5e-07, median 3.1e-07 over 4
    scale: official embeddings of clips 0 and 1 differ by 0.21 (relative), cosine 0.9763
    20.5 s clip, unfused: cosine of evar with 8 random draws of laion_clap: min 0.9929, mean 0.9947; between draws:
        min 0.9975, mean 0.9985
    20.5 s clip, fused: cosine of evar with 8 random draws of laion_clap: min 0.9953, mean 0.9976; between draws:
        min 0.9938, mean 0.9969
(The fused front end in float64 gave 2.2e-04 / 9.2e-05: torchaudio's float32 STFT lifts digitally silent bins above
the 1e-10 floor, so evar computes the fusion log-mel in float32 as torchaudio does, identical to it.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from parity_common import relative

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ['a dog barks', 'rain falls on a tin roof while a car passes by', 'Someone says YES!',
            'a long caption ' + 'with many many words ' * 6]  # the last one is longer than 77 tokens
RANDOM_DRAWS = 8
STUB_MODULES = ('h5py', 'ftfy', 'webdataset', 'braceexpand', 'wget', 'torchvision.datasets')
TEXT_SIZES = dict(vocab_size=64, hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=1024,
                  max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                  eos_token_id=2)


# ---------------------------------------------------------------------------------------------------------------
# reference side (reference venv, laion_clap 1.1.7, EVAR)

def _stubs() -> None:
    """Stand-ins for the modules laion_clap imports but never calls at inference (see the module docstring)."""
    import importlib.machinery
    import types

    import torch

    def module(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = m
        return m

    class Placeholder:
        def __init__(self, *args, **kwargs):
            raise RuntimeError('stub: not used at inference')

    class Resize:  # torchvision.transforms.Resize on a tensor [..., H, W]: bilinear, antialiased (torchvision >= 0.17)
        def __init__(self, size):
            self.size = list(size)

        def __call__(self, x):
            return torch.nn.functional.interpolate(x[None], size=self.size, mode='bilinear', align_corners=False,
                                                   antialias=True)[0]

    for name in STUB_MODULES:
        module(name, File=Placeholder, download=Placeholder, braceexpand=Placeholder, fix_text=str)
    transforms = module('torchvision.transforms', Resize=Resize, Normalize=Placeholder, Compose=Placeholder,
                        RandomResizedCrop=Placeholder, InterpolationMode=Placeholder, ToTensor=Placeholder,
                        CenterCrop=Placeholder)
    misc = module('torchvision.ops.misc', FrozenBatchNorm2d=Placeholder)
    module('torchvision.ops', misc=misc)
    module('torchvision', transforms=transforms, ops=sys.modules['torchvision.ops'],
           datasets=sys.modules['torchvision.datasets'])


def _text_tower(work: Path) -> None:
    """Redirects laion_clap's from_pretrained calls to the stand-in RoBERTa (a seeded random model of TEXT_SIZES,
    built anew on each call as from_pretrained would load it) and to the tokenizer the evar side saved in
    work/roberta."""
    import torch
    import transformers

    config = transformers.RobertaConfig(**TEXT_SIZES)

    def model(*args, **kwargs):
        torch.manual_seed(1)
        return transformers.RobertaModel(config)

    def tokenizer(*args, **kwargs):
        return transformers.PreTrainedTokenizerFast(tokenizer_file=str(work / 'roberta' / 'tokenizer.json'),
                                                    bos_token='<s>', eos_token='</s>', pad_token='<pad>',
                                                    unk_token='<unk>')

    transformers.RobertaModel.from_pretrained = model
    transformers.RobertaTokenizer.from_pretrained = tokenizer
    # laion_clap's training/data.py loads BERT's and BART's tokenizers at import; inference never uses them.
    transformers.BertTokenizer.from_pretrained = transformers.BartTokenizer.from_pretrained = lambda *a, **k: None


def _random_clap(fusion: bool, seed: int):
    """laion_clap's CLAP_Module (HTSAT-tiny + the stand-in RoBERTa) with seeded perturbed weights."""
    import torch
    import laion_clap

    from parity_common import randomise_batchnorm

    torch.manual_seed(seed)  # laion_clap's own initialisation draws from the global generator
    module = laion_clap.CLAP_Module(enable_fusion=fusion, device='cpu')
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.model.parameters():
            if p.requires_grad:  # torchlibrosa's frozen STFT and mel constants stay as they are
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
        randomise_batchnorm(module.model, g)
    return module.eval()


def _save(module, path: Path) -> Path:
    """laion_clap's layout: {'state_dict': {'module.<key>': tensor}}, with RoBERTa's position_ids as in the
    published files (laion_clap's loader deletes that key)."""
    import torch

    state = dict(module.model.state_dict())
    state.setdefault('text_branch.embeddings.position_ids', torch.arange(514)[None])
    torch.save({'epoch': 1, 'state_dict': {f'module.{k}': v for k, v in state.items()}}, path)
    return path


def _middle_choice(np):
    """numpy.random.choice replaced by the middle element (evar's deterministic fusion chunks)."""
    np.random.choice = lambda values: list(values)[len(values) // 2]


def run_reference(args) -> None:
    import numpy as np
    import torch

    work = Path(args.work)
    sys.path.insert(0, args.laion_pkg)
    torch.set_num_threads(2)
    _text_tower(work)  # imports transformers before the stubs exist (it probes which packages are installed)
    _stubs()
    import laion_clap  # noqa: F401 (after the stubs)

    waves = [torch.from_numpy(np.load(work / f'clip{i}.npy')) for i in range(len(list(work.glob('clip*.npy'))))]
    pieces = [p for w in waves for p in torch.split(w, 480000)]
    out = {}
    with torch.inference_mode():
        unfused = _random_clap(False, 0)
        path = _save(unfused, work / '630k-audioset-best.pt')
        official = laion_clap.CLAP_Module(enable_fusion=False, device='cpu')
        official.load_ckpt(ckpt=str(path), verbose=False)
        official.eval()
        out['off_pieces'] = torch.cat([official.get_audio_embedding_from_data([p], use_tensor=True) for p in pieces])
        out['off_text'] = official.get_text_embedding(CAPTIONS, use_tensor=True)
        draws = []
        for seed in range(RANDOM_DRAWS):
            np.random.seed(seed)
            draws.append(official.get_audio_embedding_from_data([waves[-1]], use_tensor=True)[0])
        out['off_long_draws'] = torch.stack(draws)

        sys.path.insert(0, args.evar_ref)
        shutil.copy(path, Path(args.evar_ref) / 'evar' / '630k-audioset-best.pt')
        from evar.ar_laionclap import AR_LAIONCLAP
        from evar.utils import load_yaml_config

        ar = AR_LAIONCLAP(load_yaml_config(Path(args.evar_ref) / 'config' / 'laionclap.yaml')).eval()
        out['evar_pieces'] = torch.cat([ar.encode_audio(p[None]) for p in pieces])
        out['evar_text'] = ar.encode_text(CAPTIONS)

        fused = _save(_random_clap(True, 2), work / '630k-audioset-fusion-best.pt')
        official = laion_clap.CLAP_Module(enable_fusion=True, device='cpu')
        official.load_ckpt(ckpt=str(fused), verbose=False)
        official.eval()
        draws = []
        for seed in range(RANDOM_DRAWS):
            np.random.seed(seed)
            draws.append(official.get_audio_embedding_from_data([waves[-1]], use_tensor=True)[0])
        out['off_fused_draws'] = torch.stack(draws)
        _middle_choice(np)
        out['off_fused'] = torch.cat([official.get_audio_embedding_from_data([w], use_tensor=True) for w in waves])
    for key, value in out.items():
        np.save(work / f'{key}.npy', value.float().numpy())


# ---------------------------------------------------------------------------------------------------------------
# evar side

def ours(weight_file: Path, text_model: Path, clips: list) -> dict:
    """evar's per-piece frames, clip embeddings (all clips in one padded batch) and text embeddings."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from evar.config import load_config
    from evar.models import create_model

    from parity_common import padded

    config = load_config(ROOT / 'config' / 'laionclap.yaml', f'weight_file={weight_file},text_model={text_model}')
    model = create_model(config.audio_repr, params=config.params).eval()
    wav, lengths = padded([torch.from_numpy(c) for c in clips])
    with torch.inference_mode():
        frames = model(wav, lengths)
        out = {'pieces': frames.embeddings[frames.mask].numpy(), 'clips': model.embed(wav, lengths).numpy(),
               'text': model.encode_text(CAPTIONS).numpy()}
        fused = create_model('laionclap', weight_file=str(weight_file.parent / '630k-audioset-fusion-best.pt'),
                             text_model=str(text_model), enable_fusion=True).eval()
        out['fused'] = fused.embed(wav, lengths).numpy()
    return {k: v.astype(np.float64) for k, v in out.items()}


def _line(name: str, mine, ref) -> str:
    import numpy as np
    import torch

    per = [relative(torch.from_numpy(a), torch.from_numpy(b)) for a, b in zip(mine, ref)]
    return f'{name}: max {max(per):.1e}, median {float(np.median(per)):.1e} over {len(per)}'


def _cosines(vector, draws) -> tuple:
    import numpy as np

    unit = vector / np.linalg.norm(vector)
    draws = draws / np.linalg.norm(draws, axis=1, keepdims=True)
    with_ours = draws @ unit
    between = (draws @ draws.T)[np.triu_indices(len(draws), 1)]
    return with_ours, between


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ref_python', default='/tmp/venv_evarref/bin/python', help="the reference venv's python")
    parser.add_argument('--laion_pkg', default='/tmp/ref_extra_laion', help='laion_clap 1.1.7 installed --no-deps')
    parser.add_argument('--evar_ref', default='/tmp/laion/evar_ref', help='a writable copy of EVAR at 88ba772')
    parser.add_argument('--side', default='evar', choices=['evar', 'ref'], help=argparse.SUPPRESS)
    parser.add_argument('--work', help=argparse.SUPPRESS)
    parser.add_argument('--data', default=str(ROOT.parent / 'shared' / 'data'))
    args = parser.parse_args()
    if args.side == 'ref':
        return run_reference(args)
    compare(args)


def compare(args) -> None:
    """Writes the clips and the text tower's config and tokenizer, runs the reference side, prints the figures."""
    import numpy as np
    import torch
    import transformers

    from parity_evar import LONG_SEC, load_clips

    sys.path.insert(0, str(ROOT / 'tests'))
    from helpers.tiny_models import write_clap_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clips = load_clips(Path(args.data), 48000)
        for i, c in enumerate(clips):
            np.save(work / f'clip{i}.npy', c)
        transformers.RobertaConfig(**TEXT_SIZES).save_pretrained(work / 'roberta')
        write_clap_tokenizer(work / 'roberta')
        env = {**os.environ, 'PYTHONPATH': '', 'HF_HUB_OFFLINE': '1'}
        subprocess.run([args.ref_python, __file__, '--side', 'ref', '--work', tmp, '--laion_pkg', args.laion_pkg,
                        '--evar_ref', args.evar_ref], check=True, env=env)
        ref = {p.stem: np.load(p).astype(np.float64) for p in work.glob('*.npy') if not p.stem.startswith('clip')}
        mine = ours(work / '630k-audioset-best.pt', work / 'roberta', clips)
    print(f'laion_clap 1.1.7 and EVAR 88ba772, random HTSAT-tiny weights, {len(clips) - 1} real clips + a {LONG_SEC} s '
          'concatenation at 48 kHz.')
    print(_line('unfused 10 s pieces vs official', mine['pieces'], ref['off_pieces']))
    print(_line("unfused 10 s pieces vs EVAR's wrapper", mine['pieces'], ref['evar_pieces']))
    print(_line('text vs official', mine['text'], ref['off_text']))
    print(_line("text vs EVAR's wrapper", mine['text'], ref['evar_text']))
    print(_line('fused clips vs official (middle chunks)', mine['fused'], ref['off_fused']))
    between = relative(*(torch.from_numpy(ref['off_pieces'][i]) for i in (0, 1)))
    cosine = float(ref['off_pieces'][0] @ ref['off_pieces'][1])
    print(f'scale: official embeddings of clips 0 and 1 differ by {between:.2f} (relative), cosine {cosine:.4f}')
    for name, vector, draws in (('unfused', mine['clips'][-1], ref['off_long_draws']),
                                ('fused', mine['fused'][-1], ref['off_fused_draws'])):
        with_ours, among = _cosines(vector, draws)
        print(f'{LONG_SEC} s clip, {name}: cosine of evar with {RANDOM_DRAWS} random draws of laion_clap: '
              f'min {with_ours.min():.4f}, mean {with_ours.mean():.4f}; between draws: min {among.min():.4f}, '
              f'mean {among.mean():.4f}')


if __name__ == '__main__':
    main()
