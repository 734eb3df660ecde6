"""Faults that would give a wrong number without a word (issue 9), each on a small task of real clips."""

import csv
import shutil

import numpy as np
import pytest
import soundfile as sf

from evar.errors import EvarError
from evar.modes.linear import HeadOptions, lineareval
from helpers import ROOT, SHARED, needs_shared

MELSPEC = ROOT / 'config' / 'melspec.yaml'
FSDD = SHARED / 'data' / 'fsdd' / 'recordings'


def real_task(tmp_path, name='t', speakers=('george', 'jackson'), digits=(0, 1, 2), metric='accuracy',
              label=lambda d, s: str(d), folder='audio', extra_rows=()):
    """A task of real FSDD clips copied under tmp_path/folder: recordings 0-4 test, 5-14 train; returns its YAML."""
    audio = tmp_path / folder
    audio.mkdir(exist_ok=True)
    rows = []
    for d in digits:
        for s in speakers:
            for i in range(15):
                shutil.copy(FSDD / f'{d}_{s}_{i}.flac', audio / f'{d}_{s}_{i}.flac')
                rows.append((f'{d}_{s}_{i}.flac', label(d, s), 'test' if i < 5 else 'train'))
    rows += list(extra_rows)
    with open(tmp_path / f'{name}.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['file_name', 'label', 'split'])
        writer.writerows(rows)
    (tmp_path / f'{name}.yaml').write_text(f'name: {name}\nmetadata: {name}.csv\ndata: {folder}\nunit_sec: 1.0\n'
                                           f'metric: {metric}\n')
    return tmp_path / f'{name}.yaml'


def evaluate(tmp_path, task, config=MELSPEC, head='logreg', **kw):
    kw.setdefault('work_root', tmp_path / 'work')
    return lineareval(config, task, progress=False, results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs',
                      head=HeadOptions(head=head), **kw)[0].score


@needs_shared
def test_cache_key_follows_the_audio_not_the_task_name(tmp_path):
    """Same task name and CSV, another data folder holding white noise under the same names: no cache reuse."""
    (tmp_path / 'a').mkdir()
    speech = real_task(tmp_path / 'a')
    real = evaluate(tmp_path, speech)
    noise_dir = tmp_path / 'b'
    noise_dir.mkdir()
    shutil.copy(tmp_path / 'a' / 't.csv', noise_dir / 't.csv')
    (noise_dir / 'noise').mkdir()
    rng = np.random.default_rng(0)
    for path in (tmp_path / 'a' / 'audio').iterdir():
        sf.write(noise_dir / 'noise' / path.name, rng.standard_normal(8000).astype(np.float32) * 0.1, 16000)
    (noise_dir / 't.yaml').write_text('name: t\nmetadata: t.csv\ndata: noise\nunit_sec: 1.0\n')
    noise = evaluate(tmp_path, noise_dir / 't.yaml')
    assert real > 0.8 and noise < 0.6, (real, noise)  # 3 digits: chance is 1/3
    assert len(list((tmp_path / 'work' / 'cache').glob('embs-*.npy'))) == 2
    # Audio replaced in place (same names) changes the key too.
    for path in (tmp_path / 'a' / 'audio').iterdir():
        sf.write(path, rng.standard_normal(8000).astype(np.float32) * 0.1, 16000)
    assert evaluate(tmp_path, speech) < 0.6
    assert len(list((tmp_path / 'work' / 'cache').glob('embs-*.npy'))) == 3


@needs_shared
def test_recompute_ignores_the_cache(tmp_path):
    task = real_task(tmp_path)
    evaluate(tmp_path, task)
    cache = next((tmp_path / 'work' / 'cache').glob('embs-*.npy'))
    before = cache.stat().st_mtime_ns
    evaluate(tmp_path, task)
    assert cache.stat().st_mtime_ns == before
    evaluate(tmp_path, task, recompute=True)
    assert cache.stat().st_mtime_ns != before


@needs_shared
def test_truncated_flac_is_a_fault_not_a_short_clip(tmp_path):
    from evar.audio import load_audio

    data = (FSDD / '0_george_0.flac').read_bytes()
    cut = tmp_path / 'cut.flac'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(EvarError, match='cut.flac is truncated or corrupt: .* of the 4768 samples'):
        load_audio(cut, 16000)
    empty = tmp_path / 'empty.flac'
    empty.write_bytes(b'')
    with pytest.raises(EvarError, match=r'empty.flac is empty \(0 bytes\)'):
        load_audio(empty, 16000)


@needs_shared
def test_every_unreadable_file_is_listed_before_embedding(tmp_path):
    task = real_task(tmp_path)
    (tmp_path / 'audio' / '0_george_5.flac').write_bytes(b'')
    (tmp_path / 'audio' / '1_jackson_6.flac').write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(EvarError) as e:
        evaluate(tmp_path, task)
    message = str(e.value)
    assert message.startswith('2 audio file(s) of task t cannot be read')
    assert '0_george_5.flac: empty (0 bytes)' in message and '1_jackson_6.flac: unreadable header' in message
    assert not (tmp_path / 'work' / 'cache').exists()


@needs_shared
def test_single_label_names_with_commas_stay_whole(tmp_path):
    names = {0: 'zero, spoken', 1: 'one, spoken', 2: 'two'}
    task = real_task(tmp_path, label=lambda d, s: names[d])
    assert evaluate(tmp_path, task) > 0.8
    preds = list(csv.DictReader(open(next((tmp_path / 'logs').glob('*/predictions-seed42-fold1.csv')))))
    assert {p['label'] for p in preds} == set(names.values())


@needs_shared
def test_label_lists_under_a_single_label_metric_stop_before_embedding(tmp_path):
    rows = [('0_george_5.flac', '0,1', 'train')]
    task = real_task(tmp_path, extra_rows=rows)
    with pytest.raises(EvarError, match=r"label\(s\) \['0,1'\] list labels .* Declare the task multi-label"):
        evaluate(tmp_path, task)
    assert not (tmp_path / 'work').exists()


def test_non_finite_embeddings_stop_before_caching(tmp_path, work):
    """A model that gives NaN for quiet clips (as one dividing each clip by its own std does on silence)."""
    (tmp_path / 'nanmodel.py').write_text(
        'import torch\n'
        'from evar.models.spec import MelSpec\n'
        'class PerClipNorm(MelSpec):\n'
        '    def features(self, wav, lengths):\n'
        '        quiet = wav.abs().amax(1, keepdim=True) < 0.2\n'
        '        return super().features(torch.where(quiet, wav / 0.0 * 0.0, wav), lengths)\n')
    config = tmp_path / 'nan.yaml'
    config.write_text(MELSPEC.read_text().replace('audio_repr: melspec', 'audio_repr: nanmodel:PerClipNorm'))
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(EvarError, match=r'NaN or infinite embeddings for \d+ of 300 clips of task demo'):
            lineareval(config, 'demo', work_root=work, progress=False, results_dir=tmp_path / 'results',
                       logs_dir=tmp_path / 'logs', head=HeadOptions(head='logreg'))
    finally:
        sys.path.remove(str(tmp_path))
    assert not list((work / 'cache').glob('embs-*')) and not (tmp_path / 'results').exists()


@needs_shared
def test_validation_is_never_empty(tmp_path):
    from evar.data import read_metadata
    from evar.splits import make_plan
    from evar.tasks import get_task

    # Multi-label, every combination unique (digit, speaker, recording): iterative stratification still carves.
    ml = real_task(tmp_path, name='ml', metric='mAP', speakers=('george', 'jackson', 'lucas'))
    rows = list(csv.DictReader(open(tmp_path / 'ml.csv')))
    for r in rows:
        r['label'] = f"{r['file_name'].split('_')[0]},{r['file_name'].split('_')[1]},take{r['file_name'][-6:-5]}"
    with open(tmp_path / 'ml.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['file_name', 'label', 'split'])
        writer.writeheader()
        writer.writerows(rows)
    task = get_task(str(ml))
    plan = make_plan(read_metadata(task.metadata, multi_label=True), task, 1, 42)
    assert plan.valid_carved and 5 <= len(plan.rows['valid']) <= 15
    assert plan.targets['train'].sum(0).min() >= 1 and plan.targets['valid'].sum() > 0
    assert evaluate(tmp_path, ml) > 0.5
    # Single-label with one training clip per class: nothing can be carved, so the run stops before embedding.
    one = real_task(tmp_path, name='one', folder='audio1',
                    label=lambda d, s: f'{d}{s}')  # placeholder labels, rewritten below
    rows = [r for r in csv.DictReader(open(tmp_path / 'one.csv'))]
    kept = [r for r in rows if r['split'] == 'test' or r['file_name'].endswith('_5.flac')]
    with open(tmp_path / 'one.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['file_name', 'label', 'split'])
        writer.writeheader()
        writer.writerows(kept)
    with pytest.raises(EvarError, match='no validation rows and none can be carved'):
        evaluate(tmp_path, one, work_root=tmp_path / 'w1')
    assert not (tmp_path / 'w1').exists()


@needs_shared
def test_a_file_in_two_splits_is_an_error_unless_allowed(tmp_path):
    leak = [(f'0_george_{i}.flac', '0', 'train') for i in range(5)]  # test clips listed again as training
    task = real_task(tmp_path, extra_rows=leak)
    with pytest.raises(EvarError, match=r"5 file\(s\) are in both the train and test splits, e.g. \['0_george_0.flac'"):
        evaluate(tmp_path, task)
    assert not (tmp_path / 'work').exists()
    assert evaluate(tmp_path, task, allow_split_overlap=True) > 0.8


def test_written_files_respect_the_umask(tmp_path, work):
    import os
    import stat

    old = os.umask(0o022)
    try:
        (tmp_path / 'results').mkdir()
        scores = tmp_path / 'results' / 'scores.csv'
        scores.write_text('representation,task,score,run_id,report\n')
        scores.chmod(0o644)
        lineareval(MELSPEC, 'demo', work_root=work, progress=False, results_dir=tmp_path / 'results',
                   logs_dir=tmp_path / 'logs', head=HeadOptions(head='knn'))
    finally:
        os.umask(old)
    files = [scores, *(work / 'cache').glob('embs-*'), *(tmp_path / 'logs').rglob('*.csv')]
    assert len(files) >= 4
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}


def test_stale_temporary_cache_files_are_removed(tmp_path, work):
    import os
    import time

    (work / 'cache').mkdir()
    stale, fresh = work / 'cache' / '.embs-x.npy.abc.npy.tmp', work / 'cache' / '.embs-y.npy.def.npy.tmp'
    stale.write_bytes(b'partial')
    fresh.write_bytes(b'being written')
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    lineareval(MELSPEC, 'demo', work_root=work, progress=False, results_dir=tmp_path / 'results',
               logs_dir=tmp_path / 'logs', head=HeadOptions(head='knn'))
    assert not stale.exists() and fresh.exists()  # a file another run may still be writing stays


def test_missing_file_errors_say_why(tmp_path):
    import unicodedata

    from evar.audio import resolve_audio_path

    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'x.wav').write_bytes(b'')
    with pytest.raises(EvarError, match=r'uses "\\" separators; write it with "/" \(a/x.wav\) \(and that file exists\)'):
        resolve_audio_path(tmp_path, 'a\\x.wav')
    nfd = unicodedata.normalize('NFD', 'café.wav')
    (tmp_path / nfd).write_bytes(b'')
    with pytest.raises(EvarError, match='Unicode NFD form exists'):
        resolve_audio_path(tmp_path, unicodedata.normalize('NFC', 'café.wav'))


def test_unusable_device_is_one_clear_error():
    import torch

    from evar.embed.source import pick_device

    with pytest.raises(EvarError, match='is not a torch device'):
        pick_device('gpu0')
    if not torch.cuda.is_available():
        with pytest.raises(EvarError, match='sees no CUDA GPU; use --device cpu'):
            pick_device('cuda')
    assert pick_device('cpu') == 'cpu'
