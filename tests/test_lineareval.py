"""End to end: the entry scripts on the generated demo task and on real audio from ../shared."""

import csv
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from evar.errors import EvarError
from evar.modes.linear import HeadOptions, lineareval
from evar.results import COLUMNS, EVAR_COLUMNS, read_scores

from helpers import BYOLA_D512, ROOT, logreg_scores_on_shared, needs_byola, needs_shared, run_script

MELSPEC = ROOT / 'config' / 'melspec.yaml'


def run(tmp_path, work, config=MELSPEC, task='demo', **kw):
    kw.setdefault('progress', False)
    return lineareval(config, task, work_root=work, results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs', **kw)


def test_demo_cli_writes_scores_logs_and_cache(tmp_path, work):
    proc = run_script('lineareval.py', MELSPEC, 'demo', '--head', 'logreg', '--work_root', work, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = read_scores(tmp_path / 'results' / 'scores.csv')
    assert list(rows[0])[:5] == EVAR_COLUMNS and list(rows[0]) == COLUMNS
    assert rows[0]['representation'] == 'melspec' and rows[0]['task'] == 'demo' and rows[0]['head'] == 'logreg'
    assert float(rows[0]['score']) > 0.9  # a real spectrogram separates the demo classes
    log_dir = next((tmp_path / 'logs').iterdir())
    preds = list(csv.DictReader(open(log_dir / 'predictions-seed42-fold1.csv')))
    assert len(preds) == 60 and {'file_name', 'label', 'prediction'} <= set(preds[0])
    assert (log_dir / 'classwise-seed42-fold1.csv').is_file() and (log_dir / 'run.log').is_file()
    assert len(list((work / 'cache').glob('embs-*.npy'))) == 1


def test_demo_separates_good_from_poor_representation(tmp_path, work):
    good = run(tmp_path, work, head=HeadOptions(head='logreg'))[0].score
    poor = run(tmp_path, work, head=HeadOptions(head='logreg'), options='n_mels=1')[0].score  # ~ loudness only
    assert good > 0.9 and poor < 0.4  # measured 59 and 20 of 60 test clips: 5 and 3 clips from either bound


def test_2pass_embeds_once_and_records_each_seed_and_mean(tmp_path, work):
    proc = run_script('2pass_lineareval.py', MELSPEC, 'demo', '--repeat', 3, '--hidden', '(32,)', '--lr', 0.003,
                      '--work_root', work, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count('embedded 300 clips') == 1
    rows = read_scores(tmp_path / 'results' / 'scores.csv')
    assert [r['seed'] for r in rows] == ['42', '43', '44', '42;43;44'] and rows[-1]['runs'] == '3'
    scores = [float(r['score']) for r in rows[:3]]
    assert float(rows[-1]['score']) == pytest.approx(np.mean(scores), abs=1e-5)
    assert float(rows[-1]['std']) == pytest.approx(np.std(scores, ddof=1), abs=1e-5)
    assert {r['head'] for r in rows} == {'mlp32'}


def test_steps_precompute_then_train_test(tmp_path, work):
    with pytest.raises(EvarError, match='2pass_1_precompute_only first'):
        run(tmp_path, work, step='2pass_2_train_test')
    assert run(tmp_path, work, step='2pass_1_precompute_only') == []
    assert not (tmp_path / 'results').exists()
    assert run(tmp_path, work, step='2pass_2_train_test')[0].score > 0.3


def test_cache_is_keyed_by_content_not_path(tmp_path, demo_root):
    from evar.embed.cache import cache_key
    from evar.config import load_config
    from evar.data import read_metadata
    from evar.embed.source import TaskEmbeddings
    from evar.tasks import get_task

    keys = []
    for where in ('a', 'b'):  # the same files at two absolute paths: one key
        work = tmp_path / where / 'work'
        shutil.copytree(demo_root, work)
        meta = read_metadata(work / 'metadata' / 'demo.csv')
        src = TaskEmbeddings(load_config(MELSPEC), get_task('demo'), meta, work, 'cpu')
        keys.append(cache_key(src.key_fields(None)))
    assert keys[0] == keys[1]
    csv_path = tmp_path / 'b' / 'work' / 'metadata' / 'demo.csv'
    csv_path.write_text(csv_path.read_text().replace('hum/hum_000.flac,hum,test', 'hum/hum_000.flac,hum,train'))
    meta = read_metadata(csv_path)
    src = TaskEmbeddings(load_config(MELSPEC), get_task('demo'), meta, tmp_path / 'b' / 'work', 'cpu')
    assert cache_key(src.key_fields(None)) != keys[0]


@needs_byola
def test_new_weights_at_same_path_never_reuse_embeddings(tmp_path, work):
    import torch

    weights = tmp_path / 'byola.pth'
    shutil.copy(BYOLA_D512, weights)
    options = f'weight_file={weights},+norm_stats=[-5.49,5.04]'
    config = ROOT / 'config' / 'byola_d512.yaml'
    first = run(tmp_path, work, config=config, options=options, head=HeadOptions(head='logreg'))
    state = torch.load(weights, weights_only=True)
    state['fc.3.weight'] = state['fc.3.weight'] * 0.5
    torch.save(state, weights)
    run(tmp_path, work, config=config, options=options, head=HeadOptions(head='logreg'))
    caches = sorted((work / 'cache').glob('embs-*.npy'))
    byola = [c for c in caches if '"audio_repr": "byola"' in c.with_suffix('.json').read_text()]
    assert len(byola) == 2 and first[0].score > 0.5
    rows = read_scores(tmp_path / 'results' / 'scores.csv')
    assert rows[0]['weight_hash'] != rows[1]['weight_hash']


def test_kfold_task_yaml_reports_mean_over_folds(tmp_path, demo_root):
    meta = tmp_path / 'folds.csv'
    lines = (demo_root / 'metadata' / 'demo.csv').read_text().splitlines()[1:]
    meta.write_text('file_name,label,fold\n' + ''.join(f'{line.rsplit(",", 1)[0]},{i % 3 + 1}\n'
                                                      for i, line in enumerate(lines)))
    task = tmp_path / 'demo3.yaml'
    task.write_text(f'metadata: folds.csv\ndata: {demo_root / "16k" / "demo"}\nunit_sec: 1.0\nfolds: 3\n')
    result = run(tmp_path, tmp_path / 'work', task=str(task), head=HeadOptions(head='logreg'))[0]
    assert [f.fold for f in result.folds] == [1, 2, 3]
    assert result.score == pytest.approx(np.mean([f.score for f in result.folds]))
    assert all(f.n_valid > 0 and f.n_test == 100 for f in result.folds)  # validation carved from train
    assert len(list(result.log_dir.glob('predictions-seed42-fold*.csv'))) == 3


def test_partial_folds_run_leave_one_fold_out_and_say_so(tmp_path, demo_root, caplog):
    """A 5-fold task whose CSV holds folds 2-4 only (a partial download) is evaluated over those, and recorded so
    (and said once)."""
    import json
    import logging

    from evar.results import read_rows

    lines = (demo_root / 'metadata' / 'demo.csv').read_text().splitlines()[1:]
    (tmp_path / 'folds.csv').write_text('file_name,label,fold\n' + ''.join(
        f'{line.rsplit(",", 1)[0]},{i % 3 + 2}\n' for i, line in enumerate(lines)))
    (tmp_path / 'demo5.yaml').write_text(f'metadata: folds.csv\ndata: {demo_root / "16k" / "demo"}\nunit_sec: 1.0\n'
                                         'folds: 5\n')
    logging.getLogger('evar').addHandler(caplog.handler)  # the run's logger does not propagate
    try:
        result = run(tmp_path, tmp_path / 'work', task=str(tmp_path / 'demo5.yaml'), head=HeadOptions(head='knn'))[0]
    finally:
        logging.getLogger('evar').removeHandler(caplog.handler)
    assert [f.fold for f in result.folds] == [2, 3, 4]
    # distinct records (caplog may see one record through two handlers)
    assert len({id(r) for r in caplog.records if 'of task demo5 are absent' in r.getMessage()}) == 1
    row = read_rows(tmp_path / 'results' / 'scores.csv')[0]
    assert json.loads(row.settings)['folds'] == [2, 3, 4] and 'folds [2, 3, 4] of 5 only' in row.report
    (tmp_path / 'folds.csv').write_text('file_name,label,fold\n' + ''.join(f'{line.rsplit(",", 1)[0]},4\n'
                                                                         for line in lines))
    with pytest.raises(EvarError, match=r'folds \[4\], expected \[1, 2, 3, 4, 5\]'):
        run(tmp_path, tmp_path / 'work', task=str(tmp_path / 'demo5.yaml'), head=HeadOptions(head='knn'))


def write_task(tmp_path, rows, name='bad'):
    (tmp_path / f'{name}.csv').write_text('file_name,label,split\n' + ''.join(f'{r}\n' for r in rows))
    (tmp_path / f'{name}.yaml').write_text(f'metadata: {name}.csv\ndata: audio\nunit_sec: 1.0\n')
    return tmp_path / f'{name}.yaml'


@pytest.mark.parametrize('case,expected', [
    ('missing', 'does not exist'),
    ('corrupt', '(?s)1 audio file.*cannot be read:.*x.wav: unreadable header'),
    ('corrupt_flac', '(?s)cannot be read:.*x.flac: unreadable header'),
    ('empty', '(?s)cannot be read:.*x.wav: declares 0 samples'),
    ('nan', 'NaN'),
    ('unseen', "label 'c'.*never occurs in the training split"),
])
def test_bad_input_stops_with_one_message_and_touches_nothing(tmp_path, case, expected):
    audio = tmp_path / 'audio'
    audio.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        sf.write(audio / f'{i}.wav', rng.standard_normal(16000).astype(np.float32) * 0.1, 16000)
    rows = [f'{i}.wav,{"ab"[i % 2]},{"train" if i < 6 else "test"}' for i in range(8)]
    if case == 'missing':
        rows.append('gone.wav,a,test')
    elif case == 'corrupt':
        (audio / 'x.wav').write_bytes(b'RIFF....WAVEfmt garbage')
        rows.append('x.wav,a,test')
    elif case == 'corrupt_flac':
        (audio / 'x.flac').write_bytes(b'fLaC' + bytes(range(256)) * 4)
        rows.append('x.flac,a,test')
    elif case == 'empty':
        sf.write(audio / 'x.wav', np.zeros(0, dtype=np.float32), 16000)
        rows.append('x.wav,a,test')
    elif case == 'nan':
        sf.write(audio / 'x.wav', np.full(100, np.nan, dtype=np.float32), 16000, subtype='FLOAT')
        rows.append('x.wav,a,test')
    else:
        sf.write(audio / '8.wav', rng.standard_normal(16000).astype(np.float32) * 0.1, 16000)
        rows.append('8.wav,c,test')
    task = write_task(tmp_path, rows)
    proc = run_script('lineareval.py', MELSPEC, task, '--work_root', tmp_path / 'work', cwd=tmp_path)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr and proc.stderr.count('Error: ') == 1
    assert re.search(expected, proc.stderr.split('Error: ')[1]), proc.stderr
    assert not (tmp_path / 'results').exists() and not (tmp_path / 'work' / 'cache').exists()


@pytest.mark.parametrize('args,expected', [
    (['nosuchtask'], 'Unknown task'),
    (['demo', '--options', 'n_mel=3'], "Unknown config key 'n_mel'"),
    (['demo', '--step', 'twice'], 'Unknown step'),
    (['demo', '--head', 'svm'], 'Unknown head'),
])
def test_cli_errors(tmp_path, demo_root, args, expected):
    proc = run_script('lineareval.py', MELSPEC, *args, '--work_root', demo_root, cwd=tmp_path)
    assert proc.returncode == 1 and expected in proc.stderr and 'Traceback' not in proc.stderr


def test_malformed_metadata(tmp_path):
    (tmp_path / 'm.csv').write_text('name,label\na.wav,x\n')
    (tmp_path / 't.yaml').write_text('metadata: m.csv\ndata: .\nunit_sec: 1\n')
    with pytest.raises(EvarError, match='expected file_name, label and either split'):
        run(tmp_path, tmp_path, task=str(tmp_path / 't.yaml'))


def test_resampled_on_load_with_one_log_line(tmp_path, demo_root):
    import soxr

    src = demo_root / '16k' / 'demo'
    dst = tmp_path / 'work' / '44k' / 'demo'
    for f in src.rglob('*.flac'):
        x, sr = sf.read(f, dtype='float32')
        (dst / f.parent.name).mkdir(parents=True, exist_ok=True)
        sf.write(dst / f.parent.name / f.name, soxr.resample(x, sr, 44100), 44100)
    (tmp_path / 'work' / 'metadata').mkdir()
    shutil.copy(demo_root / 'metadata' / 'demo.csv', tmp_path / 'work' / 'metadata')
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a notice, not a Python warning with a source line
        result = run(tmp_path, tmp_path / 'work', head=HeadOptions(head='logreg'))
    log_text = (result[0].log_dir / 'run.log').read_text()
    assert log_text.count('44100 Hz is resampled') == 1, log_text
    assert result[0].score > 0.9


def test_a_failed_run_writes_its_error_into_the_log(tmp_path, work):
    with pytest.raises(EvarError, match='No cached embeddings'):
        run(tmp_path, work, step='2pass_2_train_test')
    log_text = next((tmp_path / 'logs').glob('*/run.log')).read_text()
    assert 'run failed (EvarError) No cached embeddings' in log_text



def test_parallel_appends_never_lose_or_interleave_rows(tmp_path):
    import multiprocessing as mp

    path = tmp_path / 'scores.csv'
    with mp.get_context('spawn').Pool(6) as pool:
        pool.starmap(_append_many, [(path, w) for w in range(6)])
    rows = read_scores(path)
    assert len(rows) == 6 * 20 and all(r['report'] == 'x' * 500 for r in rows)
    assert sorted((r['representation'], r['score']) for r in rows) == sorted(
        (f'w{w}', str(i)) for w in range(6) for i in range(20))


def _append_many(path, worker):
    from evar.results import append_rows

    for i in range(20):
        append_rows(path, [{'representation': f'w{worker}', 'task': 't', 'score': i, 'report': 'x' * 500}])


def test_evar_scores_file_gets_new_columns_and_keeps_rows(tmp_path):
    from evar.results import append_rows

    path = tmp_path / 'scores.csv'
    path.write_text('representation,task,score,run_id,report\nold,esc50,0.5,abc,"a, report"\n')
    append_rows(path, [{'representation': 'new', 'task': 'demo', 'score': 0.9, 'head': 'logreg'}])
    rows = read_scores(path)
    assert [r['representation'] for r in rows] == ['old', 'new'] and rows[0]['report'] == 'a, report'
    assert rows[1]['head'] == 'logreg'


@needs_shared
@needs_byola
def test_byola_beats_melspec_on_real_speech_commands(tmp_path):
    """Real audio, real weights: BYOL-A d512 must clearly beat the log-mel baseline (Speech Commands, 12 classes)."""
    scores = logreg_scores_on_shared(tmp_path, 'spcv2_12', 'speech_commands_v2_test_a', {
        'byola': (ROOT / 'config/byola_d512.yaml', f'weight_file={BYOLA_D512}'), 'melspec': (MELSPEC, '')})
    assert scores['byola'] > scores['melspec'] + 0.25


def test_multilabel_task_reports_map(tmp_path, demo_root):
    """Multi-label rows ('a,b' labels): sigmoid outputs, mAP as the score, per-class scores in predictions."""
    lines = (demo_root / 'metadata' / 'demo.csv').read_text().splitlines()[1:]
    tonal = {'hum', 'whistle', 'beeps', 'sweep'}
    rows = []
    for line in lines:
        name, label, split = line.split(',')
        tags = [label] + (['tonal'] if label in tonal else [])
        rows.append(f'{name},"{",".join(tags)}",{split}')
    (tmp_path / 'ml.csv').write_text('file_name,label,split\n' + '\n'.join(rows) + '\n')
    (tmp_path / 'ml.yaml').write_text(f'metadata: ml.csv\ndata: {demo_root / "16k" / "demo"}\nunit_sec: 1\n'
                                      'metric: mAP\n')
    result = run(tmp_path, tmp_path / 'work', task=str(tmp_path / 'ml.yaml'), head=HeadOptions(head='logreg'))[0]
    assert result.score > 0.9
    preds = list(csv.DictReader(open(result.log_dir / 'predictions-seed42-fold1.csv')))
    assert 'tonal' in preds[0] and len(preds) == 60
    assert read_scores(tmp_path / 'results' / 'scores.csv')[0]['metric'] == 'mAP'


def test_linspec_float16_cache_and_mixup(tmp_path, work):
    result = run(tmp_path, work, config=ROOT / 'config' / 'linspec.yaml', options='+cache_dtype=float16',
                 head=HeadOptions(mixup=0.1, lr=0.003))
    cache = next((work / 'cache').glob('embs-*.npy'))
    embs = np.load(cache, mmap_mode='r')
    assert embs.dtype == np.float16 and embs.shape == (300, 513)
    assert result[0].score > 0.5


def test_interrupted_cache_write_leaves_no_file(tmp_path, work, monkeypatch):
    from evar.embed import cache as cache_module

    def broken_save(f, array):
        f.write(b'partial')
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.np, 'save', broken_save)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, work)
    assert not list((work / 'cache').glob('embs-*')) and not list((work / 'cache').glob('.*tmp'))
    assert not (tmp_path / 'results').exists()


def test_summarize_reads_our_scores(tmp_path, work):
    run(tmp_path, work, seeds=(42, 43), head=HeadOptions(head='logreg'))
    proc = run_script('summarize.py', '--results', tmp_path / 'results' / 'scores.csv', '--out',
                      tmp_path / 'summary.csv', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'melspec' in proc.stdout and 'demo' in proc.stdout and (tmp_path / 'summary.csv').is_file()


def test_runs_with_other_settings_are_other_runs(tmp_path, work):
    """--lr or --unit_sec change the run id, the log folder and the recorded settings; summarize keeps them apart."""
    import json

    from evar.results import read_rows
    from evar.summarize import summarize

    a = run(tmp_path, work, head=HeadOptions(lr=0.003))[0]
    b = run(tmp_path, work, head=HeadOptions(lr=0.001))[0]
    c = run(tmp_path, work, head=HeadOptions(lr=0.001), seeds=(43,))[0]
    assert a.log_dir != b.log_dir and b.log_dir == c.log_dir  # a seed is a repeat, not another setting
    rows = read_rows(tmp_path / 'results' / 'scores.csv')
    assert rows[0].run_id != rows[1].run_id == rows[2].run_id
    settings = [json.loads(r.settings) for r in rows]
    assert [s['head_params']['lr'] for s in settings] == [0.003, 0.001, 0.001]
    assert settings[0]['embedding_dim'] == 64 and settings[0]['unit_sec'] == 1.0
    table = summarize(results=tmp_path / 'results' / 'scores.csv')
    assert len(table.rows) == 2 and sorted(m.cells['demo'].runs for m in table.rows) == [1, 2]
    assert all(m.label.startswith('melspec [') for m in table.rows)
