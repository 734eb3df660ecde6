"""Zero-shot keyword spotting with Whisper tiny.en's decoder on the real Speech Commands clips (spcv2_12).

    python benchmarks/zeroshot_whisper.py [--config config/whisper_tiny_en_ct2.yaml]
        [--data ../shared/data/speech_commands_v2_test_a] [--scores work/zeroshot_whisper_spcv2_12.npz]

Each clip is scored against a bank of captions by `WhisperCT2.caption_log_likelihood` (mean log-probability per
token of the caption as the whole transcript, <|endoftext|> included); a class's score is the maximum over its
captions (a clip is one word, so the best-matching caption is the class's evidence). The score matrix is saved, so
the caption choices below are compared without running Whisper again. The caption sets:
- the 10 words: the word itself (a leading space is added, as Whisper's transcripts have one);
- `_silence_` (1 s of background noise): one of '' (the empty transcript: only <|endoftext|> scored), '[silence]',
  '(silence)', '[BLANK_AUDIO]', '[noise]', '...', the one most accurate on the task's train and valid splits (nothing
  else is fitted, and the test split never selects);
- `_unknown_` (any of Speech Commands v2's 25 other words): the maximum over those 25 words, the class's definition
  in the dataset; compared with their mean (what the zeroshot mode does with several captions of one class) and with
  leaving `_unknown_` out (never predicted).
Accuracy is reported on the task's test split (evar's speaker-grouped 70/10/20 split of this folder; nothing is
trained, so the other splits only add clips) and on all 1,200 clips, with the confusions of `_silence_` and
`_unknown_`. On 2 shared CPU cores scoring takes about 20 minutes, mostly the encoder on 30 s of padded input per
clip.

    python benchmarks/zeroshot_whisper.py --parity /path/to/venv/bin/python

checks the scores against CTranslate2's own inference instead (that interpreter needs `pip install ctranslate2
numpy`; evar's does not): on the second clip of each class folder, the 10 words, '', 'Yes.' and 'marvin' are scored
by evar and by ctranslate2.models.Whisper (float32, the same log-mel input, each caption forced as a decoding prefix
with its per-step log-probabilities returned), and both decode greedily.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

WORDS = ('yes', 'no', 'up', 'down', 'left', 'right', 'on', 'off', 'stop', 'go')
OTHER_WORDS = ('backward', 'bed', 'bird', 'cat', 'dog', 'eight', 'five', 'follow', 'forward', 'four', 'happy',
               'house', 'learn', 'marvin', 'nine', 'one', 'seven', 'sheila', 'six', 'three', 'tree', 'two', 'visual',
               'wow', 'zero')  # Speech Commands v2's words outside the 10 commands (Warden 2018, table 1)
SILENCE_CAPTIONS = ('', '[silence]', '(silence)', '[BLANK_AUDIO]', '[noise]', '...')
BANK = WORDS + SILENCE_CAPTIONS + OTHER_WORDS


def score_clips(config: Path, data: Path, batch: int = 16) -> dict:
    """Caption scores [N, len(BANK)] of every clip of spcv2_12 built from `data`, with labels and splits."""
    import torch
    from evar.audio import load_audio
    from evar.config import load_config
    from evar.models import create_model
    from evar.tasks import BUILTIN_TASKS

    rows = sorted(BUILTIN_TASKS['spcv2_12'].build(data, None))
    cfg = load_config(config)
    model = create_model(cfg.audio_repr, cfg.params).eval()
    scores = []
    start = time.time()
    for k in range(0, len(rows), batch):
        waves = [torch.from_numpy(load_audio(data / f, 16000)[0]) for f, _, _ in rows[k:k + batch]]
        wav = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        with torch.inference_mode():
            scores.append(model.caption_log_likelihood(wav, torch.tensor([len(w) for w in waves]), list(BANK)))
        print(f'\r{k + len(waves)}/{len(rows)} clips, {time.time() - start:.0f} s', end='', flush=True)
    print()
    return {'scores': torch.cat(scores).numpy(), 'files': np.array([r[0] for r in rows]),
            'labels': np.array([r[1] for r in rows]), 'splits': np.array([r[2] for r in rows]),
            'bank': np.array(BANK)}


def classify(scores: np.ndarray, silence: str, unknown: str) -> tuple:
    """(class names, predicted class index [N]); `unknown`: 'max' or 'mean' over the 25 other words' scores (the
    zeroshot mode averages a class's captions), or 'out' (no `_unknown_` class)."""
    col = {c: i for i, c in enumerate(BANK)}
    classes = list(WORDS) + ['_silence_']
    columns = [scores[:, col[w]] for w in WORDS] + [scores[:, col[silence]]]
    if unknown != 'out':
        classes.append('_unknown_')
        other = scores[:, [col[w] for w in OTHER_WORDS]]
        columns.append(other.max(1) if unknown == 'max' else other.mean(1))
    return classes, np.stack(columns, 1).argmax(1)


def report(result: dict) -> None:
    """Prints accuracy per caption choice and the confusions of the chosen one."""
    labels, splits = result['labels'], result['splits']
    test = splits == 'test'
    print(f'clips: {len(labels)} ({test.sum()} in the test split); chance 1/12 = {1 / 12:.3f}')
    print('_unknown_: max or mean over the 25 other words, or out (no such class)')
    print(f'{"_silence_ caption":>18} {"_unknown_":>10} {"train+valid":>11} {"test acc":>9} {"all acc":>8} '
          f'{"silence recall":>14} {"silence precision":>17}')
    chosen = {}
    for silence in SILENCE_CAPTIONS:
        for unknown in ('max', 'mean', 'out'):
            classes, pred = classify(result['scores'], silence, unknown)
            names = np.array(classes)[pred]
            hit = names == labels
            sil, said = labels == '_silence_', names == '_silence_'
            if unknown == 'max':
                chosen[silence] = hit[~test].mean()
            print(f'{silence!r:>18} {unknown:>10} {hit[~test].mean():11.4f} {hit[test].mean():9.4f} {hit.mean():8.4f} '
                  f'{hit[sil].mean():14.2f} {(labels[said] == "_silence_").mean() if said.any() else 0:17.2f}')
    silence = max(chosen, key=chosen.get)  # selected on the train and valid splits, never on test
    classes, pred = classify(result['scores'], silence, 'max')
    names = np.array(classes)[pred]
    print(f'\nchosen on train+valid: words, _silence_ = {silence!r}, _unknown_ = max over the 25 other words; '
          f'test accuracy {(names == labels)[test].mean():.4f}; per class (all clips):')
    for c in classes:
        m = labels == c
        wrong = {k: int((names[m] == k).sum()) for k in classes if k != c and (names[m] == k).any()}
        print(f'  {c:>10}: {np.mean(names[m] == c):.2f}  predicted as {dict(sorted(wrong.items(), key=lambda kv: -kv[1])[:4])}')
    for c in ('_silence_', '_unknown_'):
        got = names == c
        print(f'  predicted {c}: {got.sum()} clips, of which {int((labels[got] == c).sum())} are {c}')


PARITY_TEXTS = WORDS + ('', 'Yes.', 'marvin')


def parity(config: Path, data: Path, python: str) -> None:
    """evar's caption scores and greedy tokens vs CTranslate2's (run by `python`, see `ct2_side`) on 12 real clips."""
    import torch
    from evar.audio import load_audio
    from evar.config import load_config
    from evar.models import create_model

    cfg = load_config(config)
    model = create_model(cfg.audio_repr, cfg.params).eval()
    files = [sorted((data / c).glob('*.flac'))[1] for c in WORDS + ('_silence_', '_unknown_')]
    waves = [torch.from_numpy(load_audio(f, 16000)[0]) for f in files]
    wav, lengths = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), torch.tensor([len(w) for w in waves])
    with torch.inference_mode():
        text = model.text_decoder()
        scores = model.caption_log_likelihood(wav, lengths, list(PARITY_TEXTS)).double().numpy()
        greedy = text.greedy(model.encoder_output(wav, lengths))
        features = model._whisper_inputs(waves).numpy()  # the log-mel both sides get
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / 'features.npy', features)
        (Path(folder) / 'meta.json').write_text(json.dumps({
            'model': str(Path(model.weight_file).parent), 'prompt': text.prompt,
            'tokens': [text.text_tokens(t) + [text.eot] for t in PARITY_TEXTS]}))
        subprocess.run([python, __file__, '--ct2-side', folder], check=True)
        ref = np.load(Path(folder) / 'scores.npy')
        ref_greedy = json.loads((Path(folder) / 'greedy.json').read_text())
    print(f'{len(files)} clips x {len(PARITY_TEXTS)} captions: max |evar - ctranslate2| = {np.abs(scores - ref).max():.2e} '
          f'nats/token (mean |score| {np.abs(ref).mean():.2f}); same best caption: '
          f'{(scores.argmax(1) == ref.argmax(1)).all()}; same greedy tokens: {greedy == ref_greedy}')
    print('greedy transcripts:', [text.decode(t) for t in greedy])


def ct2_side(folder: Path) -> None:
    """The reference, in an interpreter with ctranslate2 (no torch, no evar): per caption, its tokens but the last
    (<|endoftext|>) forced as a decoding prefix; ctranslate2 returns every step's logits, forced steps included, so
    step k gives log p(token k | start tokens, tokens < k, audio). Also greedy decoding (faster-whisper's defaults
    without timestamps: suppress_blank and the config's suppress_tokens)."""
    import ctranslate2

    meta = json.loads((folder / 'meta.json').read_text())
    whisper = ctranslate2.models.Whisper(meta['model'], device='cpu', compute_type='float32')
    memory = whisper.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(np.load(folder / 'features.npy'))))
    n = memory.shape[0]

    def log_softmax(x):
        x = np.asarray(x, dtype=np.float64)
        return x - x.max() - np.log(np.exp(x - x.max()).sum())

    scores = np.zeros((n, len(meta['tokens'])))
    for j, tokens in enumerate(meta['tokens']):
        results = whisper.generate(memory, [meta['prompt'] + tokens[:-1]] * n, beam_size=1, max_length=64,
                                   return_logits_vocab=True, suppress_blank=False, suppress_tokens=[])
        for i, r in enumerate(results):
            scores[i, j] = np.mean([log_softmax(r.logits[0][k])[t] for k, t in enumerate(tokens)])
    np.save(folder / 'scores.npy', scores)
    greedy = whisper.generate(memory, [meta['prompt']] * n, beam_size=1)
    (folder / 'greedy.json').write_text(json.dumps([r.sequences_ids[0] for r in greedy]))


def main() -> None:
    """Scores (or reads the saved scores) and reports."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', type=Path, default=ROOT / 'config' / 'whisper_tiny_en_ct2.yaml')
    p.add_argument('--data', type=Path, default=ROOT.parent / 'shared' / 'data' / 'speech_commands_v2_test_a')
    p.add_argument('--scores', type=Path, default=ROOT / 'work' / 'zeroshot_whisper_spcv2_12.npz')
    p.add_argument('--parity', metavar='PYTHON', help='compare with CTranslate2 run by this interpreter instead')
    p.add_argument('--ct2-side', type=Path, help=argparse.SUPPRESS)  # the reference half of --parity
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))  # evar from this checkout
    if args.ct2_side:
        return ct2_side(args.ct2_side)
    if args.parity:
        return parity(args.config, args.data, args.parity)
    if args.scores.is_file() and tuple(np.load(args.scores)['bank']) == BANK:
        result = dict(np.load(args.scores))
    else:
        result = score_clips(args.config, args.data)
        args.scores.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.scores, **result)
    report(result)


if __name__ == '__main__':
    main()
