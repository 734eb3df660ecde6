"""Side-by-side parity check of evar's `msclap` (evar/models/msclap.py) against (a) the official code, the `msclap`
package 1.3.4 (github.com/microsoft/CLAP; PyPI's 1.3.4 equals the repo's HEAD e8a6467), and (b) EVAR's wrapper
`evar/ar_msclap.py` of nttcslab/eval-audio-repr at 88ba772, which hands file names to msclap.

Weights: seeded random, saved in msclap's checkpoint layout ({'model': state}, msclap's key names) by
tests/helpers/tiny_msclap.py at the official sizes of the audio towers (CNN14 64 ... 2048 channels, fc1 2048; HTS-AT
96-d, depths 2-2-6-2, heads 4-8-16-32) and the projections (1024-d); the text towers are BERT-base / GPT-2 wide (768)
with 2 layers and a character tokenizer (no hub access here: the config and tokenizer folders are written locally,
by the reference side so its older transformers reads them). Clips (../shared, 16 kHz) are written as float 32 kHz
WAV files, as EVAR prepares its data for msclap.yaml's sample_rate 32000, and both sides read those files: a 5 s ESC-50
clip, a ~3.5 s RAVDESS sentence, a 1 s speech command and a 20.5 s concatenation of them (longer than both versions'
windows). msclap's random crop of clips longer than the window is made reproducible by seeding Python's `random`
on both sides (evar's `long_clip: random` draws the same start); evar's default `long_clip: chunks` is compared with
the mean of msclap's embeddings of the same windows (msclap's own `_get_audio_embeddings` on each 44.1 kHz window,
filled by msclap's repetition rule). The reference side also checks the file loads with msclap's own strict=False
loader without missing or unexpected keys, and that torchaudio's Resample equals evar's `sinc_resample`.

The two sides run in separate interpreters and exchange .npy files: this script runs in evar's venv and calls itself
with `--side ref` in the reference venv (torch, transformers 4.x, torchaudio, torchlibrosa, EVAR's dependencies),
with msclap installed apart (`pip install --no-deps --target <dir> msclap==1.3.4`) and put on PYTHONPATH. On the
reference side msclap's hub downloads are replaced by the local files (hf_hub_download -> the checkpoint;
AutoModel.from_pretrained(text folder) -> the config's random model, which the checkpoint then overwrites) and
torchaudio.load (needs torchcodec there) by soundfile's float32 read (the values torchaudio.load returns).

    PYTHONPATH=/tmp/ref_extra_msclap python benchmarks/parity_msclap.py \\
        --ref_python /tmp/venv_evarref/bin/python --evar_ref /tmp/evar_ref

Seen on 2026-12-06 (evar venv torch 2.13 CPU, transformers 5.25; reference venv torch 2.13.0+cpu, transformers
4.46.3, torchaudio 2.11.1, torchlibrosa 0.1.0, msclap 1.3.4, EVAR 88ba772); relative difference max / median over
the clips (captions), each row max|ours - ref| / max|ref|:
    msclap's strict=False load of these files: 2022 nothing missing; 2023 missing only the Swin attention masks and
        the classifier biases (rebuilt / unused), unexpected only buffers (position_ids, attn.bias, an attn_mask)
    resampling 32 -> 44.1 kHz, evar's sinc_resample vs torchaudio's Resample: 8.5e-08 absolute (peak 0.04)
    2022 audio (4 clips; long_clip random with the same seed) vs msclap 2.2e-06 / 1.6e-06, vs EVAR's AR_MSCLAP the
        same (EVAR calls msclap); text (4 captions, one over 100 tokens) 3.8e-07 / 3.6e-07
    2023 audio vs msclap and vs EVAR 2.9e-05 / 1.4e-05 (per clip: ESC-50 2.9e-05, RAVDESS 5.3e-07, speech command
        9.4e-06); text 4.2e-07 / 4.0e-07. Not traced to the end, but not the model code: msclap's own HTSATWrapper
        loaded from the same file in evar's venv (msclap on PYTHONPATH, torchaudio stubbed) and fed evar's 44.1 kHz
        ESC-50 window gives a projected embedding within 2.0e-06 of evar's (latent_output 1.6e-06; 1.6e-07 when both
        take torchlibrosa's log-mel, which differs from the float64 STFT here by up to 0.019 dB in bands 85-100 dB
        down). The rest lies between the two interpreters' inputs and builds (torchaudio's resampling: 8.5e-08).
    long_clip chunks on the 20.5 s clip vs the mean of msclap's embeddings of its windows: 8.8e-07 (2022), 6.8e-06
        (2023); chunks vs msclap's random window on that clip: 0.07 / 0.06 (the two rules differ, as they should)
    scale: msclap's embeddings of two different clips differ by 0.11 (2022) and 0.49 (2023), two captions by 0.04
        and 1.01, so the figures above are not those of a dead model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from parity_common import load_clip

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared' / 'data'
TEXTS = ['a dog barks', 'rain falls on a tin roof!', 'speech', 'the sound of ' + 'a helicopter passing by ' * 5]
SEED = 1234
VERSIONS = ('2022', '2023')


def clip_files(work: Path) -> list:
    """The four clips as float32 32 kHz WAV files in `work` (soxr HQ from the 16 kHz sources, as evar reads)."""
    import numpy as np
    import soundfile as sf
    import soxr

    esc = sorted((SHARED / 'ESC-50' / 'audio').glob('*.flac'))[0]
    rav = sorted((SHARED / 'RAVDESS').glob('Actor_*/*.flac'))[0]
    spc = sorted(p for p in (SHARED / 'speech_commands_v2_test_a').glob('*/*.flac') if '_' not in p.parent.name)[0]
    waves = [load_clip(p) for p in (esc, rav, spc)]
    long = np.concatenate(waves + waves[:1] + waves[:1] + waves[1:2] + waves[:1])[:int(20.5 * 16000)]
    paths = []
    for name, x in zip(('esc50', 'ravdess', 'speech_command', 'concatenation'), waves + [long]):
        path = work / f'{name}.wav'
        sf.write(path, soxr.resample(x, 16000, 32000, quality='HQ').astype(np.float32), 32000, subtype='FLOAT')
        paths.append(path)
    return paths


def tiny_msclap():
    """tests/helpers/tiny_msclap.py as a module, imported by path (tests/helpers/__init__ needs pytest, which the
    reference venv lacks)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location('tiny_msclap', ROOT / 'tests' / 'helpers' / 'tiny_msclap.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------------------------
# Reference side (msclap and EVAR's wrapper).

def _patch_msclap(weights: dict, text_folders: dict) -> None:
    """Offline msclap: the checkpoint instead of the hub download, the text model built from its config folder,
    soundfile's read for torchaudio.load."""
    import soundfile as sf
    import torch
    import torchaudio
    import transformers

    import msclap.CLAPWrapper as wrapper
    import msclap.models.clap as clap_module

    wrapper.hf_hub_download = lambda repo, name: str(weights[name])

    def load(path):
        x, sr = sf.read(str(path), dtype='float32', always_2d=True)
        return torch.from_numpy(x.T.copy()), sr

    torchaudio.load = load

    class AutoModel:
        @staticmethod
        def from_pretrained(name):
            return transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(name))

    clap_module.AutoModel = AutoModel
    real_config = wrapper.CLAPWrapper.read_config_as_args

    def read_config(self, config, args=None, is_config_str=False):
        out = real_config(self, config, args, is_config_str)
        out.text_model = str(text_folders[out.text_model])  # folder names keep 'bert' / 'gpt' for msclap's checks
        return out

    wrapper.CLAPWrapper.read_config_as_args = read_config


def reference(work: Path, evar_ref: Path) -> None:
    """Writes the text folders (step 1) or, when the checkpoints exist, the reference embeddings (step 2)."""
    import random

    import numpy as np
    import torch

    tiny = tiny_msclap()
    write_bert_folder, write_gpt2_folder = tiny.write_bert_folder, tiny.write_gpt2_folder
    folders = {'bert-base-uncased': work / 'bert_base', 'gpt2': work / 'gpt2_base'}
    if not (work / 'CLAP_weights_2023.pth').exists():
        write_bert_folder(folders['bert-base-uncased'], hidden=768, layers=2, heads=12)
        write_gpt2_folder(folders['gpt2'], hidden=768, layers=2, heads=12)
        return
    weights = {f'CLAP_weights_{v}.pth': work / f'CLAP_weights_{v}.pth' for v in VERSIONS}
    _patch_msclap(weights, folders)
    import torchaudio.transforms as T
    from msclap import CLAP

    sys.path.insert(0, str(evar_ref))
    from easydict import EasyDict
    from evar.ar_msclap import AR_MSCLAP  # EVAR's wrapper (EVAR's package is also called evar)

    files = json.loads((work / 'files.json').read_text())
    report = {}
    for v in VERSIONS:
        official = CLAP(model_fp=str(weights[f'CLAP_weights_{v}.pth']), version=v, use_cuda=False)
        state = torch.load(weights[f'CLAP_weights_{v}.pth'], map_location='cpu')['model']
        result = official.clap.load_state_dict(state, strict=False)
        report[v] = {'missing': list(result.missing_keys), 'unexpected': list(result.unexpected_keys)}
        with torch.no_grad():
            random.seed(SEED)
            np.save(work / f'ref_{v}_audio.npy', official.get_audio_embeddings(files).numpy())
            # One caption at a time: msclap does not truncate, and a caption over text_len tokens cannot be
            # stacked with shorter ones (its batch fails), so EVAR's zero-shot fails on such a caption list.
            np.save(work / f'ref_{v}_text.npy', torch.cat([official.get_text_embeddings([t]) for t in TEXTS]).numpy())
            wave, _ = official.read_audio(files[-1])  # resampled to 44.1 kHz by torchaudio
            w = official.args.duration * official.args.sampling_rate
            windows = [x for x in wave.reshape(-1).split(w)]
            windows = [x.repeat(-(-w // len(x)))[:w] for x in windows]
            chunks = official._get_audio_embeddings(torch.stack(windows)[:, None]).mean(0)
            np.save(work / f'ref_{v}_chunks.npy', chunks.numpy())
            cfg = EasyDict({'weight_file': v, 'return_filename': True})
            evar_ar = AR_MSCLAP(cfg).eval()
            random.seed(SEED)
            np.save(work / f'evarref_{v}_audio.npy', evar_ar.encode_audio(files).numpy())
            np.save(work / f'evarref_{v}_text.npy', torch.cat([evar_ar.encode_text([t]) for t in TEXTS]).numpy())
    import soundfile as sf
    x, _ = sf.read(files[1], dtype='float32')
    np.save(work / 'ref_resampled.npy', T.Resample(32000, 44100)(torch.from_numpy(x)[None])[0].numpy())
    (work / 'ref_report.json').write_text(json.dumps(report))


# ---------------------------------------------------------------------------------------------------------------------
# evar side.

def ours(work: Path, version: str, files: list, long_clip: str):
    """(clip embeddings [4, 1024], text embeddings [len(TEXTS), 1024]) of evar's msclap on the 32 kHz files."""
    import random

    import torch

    from evar.audio import load_audio
    from evar.models import create_model
    from parity_common import padded

    folder = work / ('bert_base' if version == '2022' else 'gpt2_base')
    model = create_model('msclap', weight_file=str(work / f'CLAP_weights_{version}.pth'), text_model=str(folder),
                         long_clip=long_clip).eval()
    wav, lengths = padded([load_audio(f, 32000)[0] for f in files])
    with torch.inference_mode():
        random.seed(SEED)
        return model.embed(wav, lengths), model.encode_text(TEXTS)


def rel(a, b) -> tuple:
    """Per-row max|a - b| / max|b|: (max, median) over rows."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    r = np.abs(a - b).max(1) / np.abs(b).max(1)
    return float(r.max()), float(np.median(r))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--side', default='ours', choices=['ours', 'ref'])
    parser.add_argument('--ref_python', default='/tmp/venv_evarref/bin/python')
    parser.add_argument('--evar_ref', default='/tmp/evar_ref', help="EVAR's source folder (88ba772)")
    parser.add_argument('--work', default=None, help='folder for the exchanged files (default: a temporary one)')
    args = parser.parse_args()
    if args.side == 'ref':
        reference(Path(args.work), Path(args.evar_ref))
        return
    import numpy as np
    import torch

    write_msclap = tiny_msclap().write_msclap
    from evar.models.htsat import SwinArch
    from evar.models.msclap import sinc_resample
    from evar.models.panns import CHANNELS

    work = Path(args.work or tempfile.mkdtemp(prefix='parity_msclap_'))
    work.mkdir(parents=True, exist_ok=True)
    files = [str(p) for p in clip_files(work)]
    (work / 'files.json').write_text(json.dumps(files))
    cmd = [args.ref_python, __file__, '--side', 'ref', '--work', str(work), '--evar_ref', args.evar_ref]
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(Path(__file__).parent), os.environ.get('PYTHONPATH', '')])}
    subprocess.run(cmd, check=True, env=env)  # text folders
    official_swin = {k: getattr(SwinArch(), k) for k in ('embed_dim', 'depths', 'num_heads', 'swin_window')}
    write_msclap(work / 'CLAP_weights_2022.pth', '2022', work / 'bert_base', audio_dim=2048, d_proj=1024, seed=0,
                 channels=CHANNELS)
    write_msclap(work / 'CLAP_weights_2023.pth', '2023', work / 'gpt2_base', d_proj=1024, seed=1, swin=official_swin)
    subprocess.run(cmd, check=True, env=env)  # reference embeddings
    print('msclap load_state_dict(strict=False) of our files:', (work / 'ref_report.json').read_text())
    import soundfile as sf
    x, _ = sf.read(files[1], dtype='float32')
    ref = np.load(work / 'ref_resampled.npy')
    mine = sinc_resample(torch.from_numpy(x)[None], 32000, 44100)[0].numpy()
    print(f'resampling 32 -> 44.1 kHz (RAVDESS clip): {mine.shape} vs torchaudio {ref.shape}, max abs diff '
          f'{np.abs(mine - ref).max():.2e} (peak {np.abs(ref).max():.2f})')
    for v in VERSIONS:
        audio, text = ours(work, v, files, 'random')
        chunks, _ = ours(work, v, files, 'chunks')
        ref_audio, ref_text = np.load(work / f'ref_{v}_audio.npy'), np.load(work / f'ref_{v}_text.npy')
        evar_audio, evar_text = np.load(work / f'evarref_{v}_audio.npy'), np.load(work / f'evarref_{v}_text.npy')
        unit = ref_text / np.linalg.norm(ref_text, axis=1, keepdims=True)
        print(f'{v}: audio (long_clip random, 4 clips) vs msclap: max {rel(audio, ref_audio)[0]:.1e} / median '
              f'{rel(audio, ref_audio)[1]:.1e}; vs EVAR AR_MSCLAP: {rel(audio, evar_audio)[0]:.1e} / '
              f'{rel(audio, evar_audio)[1]:.1e}')
        print(f'{v}: text ({len(TEXTS)} captions, L2-normalised) vs msclap: max {rel(text, unit)[0]:.1e} / median '
              f'{rel(text, unit)[1]:.1e}; EVAR AR_MSCLAP text == msclap: {np.abs(evar_text - ref_text).max():.1e}')
        print(f'{v}: long_clip chunks, 20.5 s clip vs the mean of msclap\'s window embeddings: '
              f'{rel(chunks[3:].numpy(), np.load(work / f"ref_{v}_chunks.npy")[None])[0]:.1e}; '
              f'chunks vs random on it: {rel(chunks[3:].numpy(), ref_audio[3:])[0]:.2f}; clips 0-2 chunks vs msclap: '
              f'{rel(chunks[:3].numpy(), ref_audio[:3])[0]:.1e}')
        between = rel(ref_audio[:1], ref_audio[1:2])[0]
        print(f'{v}: between-clip scale (msclap clip 0 vs clip 1): {between:.2f}; text 0 vs 1: '
              f'{rel(unit[:1], unit[1:2])[0]:.2f}')


if __name__ == '__main__':
    main()
