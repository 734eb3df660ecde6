"""SED tasks from publishers' layouts: HEAR's event tasks (dcase2016_task2, maestro) from HEAR task folders and
DESED from its dataset/ folder, both written here from real clips of ../shared/data; HEAR's fold rounds; the event
macro F1 and PSDS1 on hand-made event lists (values worked out below); `evar sed` end to end on a folded task and
with PSDS."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evar.errors import EvarError
from evar.sed import Event, psds1, read_events, sed_scores, staircase_area, write_events
from evar.tasks import BUILTIN_TASKS

from helpers import SHARED, needs_shared

pytest.importorskip('sed_eval')
ESC50 = SHARED / 'data' / 'ESC-50' / 'audio'


def _clips(n: int) -> list:
    return sorted(ESC50.iterdir())[:n]


def _wav(path: Path, source: Path, seconds: float = 4.0) -> None:
    """A real 16 kHz clip as a 16-bit wav of `seconds` (trimmed or zero-padded, as hear-preprocess does)."""
    x, rate = sf.read(str(source), dtype='float32')
    n = int(seconds * rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.pad(x[:n], (0, max(0, n - len(x)))), rate, subtype='PCM_16')


# ---------------------------------------------------------------- HEAR event tasks

def _hear_event_folder(base: Path, task_name: str, version: str, mode: str, splits: list, events: dict,
                       nfolds: int = 0) -> Path:
    """A HEAR event task folder as hear-preprocess writes it: task_metadata.json (event, multilabel), one
    <split>.json of clip -> [{"label", "start", "end"} (ms)] per split, audio at 16000 Hz."""
    root = base / f'{task_name}-{version}-{mode}'
    config = {'task_name': task_name, 'version': version, 'mode': mode, 'embedding_type': 'event',
              'prediction_type': 'multilabel', 'split_mode': 'new_split_kfold' if nfolds else 'trainvaltest',
              'sample_duration': 4.0, 'splits': splits, 'evaluation': ['event_onset_200ms_fms']}
    if nfolds:
        config['nfolds'] = nfolds
    root.mkdir(parents=True)
    (root / 'task_metadata.json').write_text(json.dumps(config, indent=True))
    sources = iter(_clips(sum(len(events[s]) for s in splits)))
    for split in splits:
        (root / f'{split}.json').write_text(json.dumps(events[split], indent=True))
        for clip in events[split]:
            _wav(root / '16000' / split / clip, next(sources))
    return root


def _ev(label, start_ms, end_ms):
    return {'label': label, 'start': start_ms, 'end': end_ms}


@needs_shared
def test_dcase2016_task2_from_hears_folder(tmp_path, capsys):
    from evar.metadata import make_metadata

    events = {'train': {'a.wav': [_ev('cough', 500.0, 1250.0), _ev('doorslam', 2000.0, 2300.0)],
                        'b.wav': [_ev('cough', 100.0, 900.0)]},
              'valid': {'c.wav': [_ev('doorslam', 0.0, 400.0)]},
              'test': {'d.wav': [_ev('cough', 3000.0, 4000.0), _ev('laughter', 3500.0, 3500.0)]}}
    root = _hear_event_folder(tmp_path, 'dcase2016_task2', 'hear2021', 'full', ['train', 'valid', 'test'], events)
    work = tmp_path / 'work'
    make_metadata('dcase2016_task2', root / '16000', work_root=work)
    assert 'sample_duration 4.0 s' in capsys.readouterr().err  # HEAR's is 120 s: warned, not refused
    out = work / '16k' / 'dcase2016_task2'
    assert (work / 'metadata' / 'dcase2016_task2.csv').read_text().splitlines() == [
        'file_name,label,split', 'test/d.wav,cough,test', 'train/a.wav,"cough,doorslam",train',
        'train/b.wav,cough,train', 'valid/c.wav,doorslam,valid']
    assert os.path.realpath(out / 'train') == str((root / '16000' / 'train').resolve())
    table = read_events(out / 'events.csv')
    by = dict(zip(table.file_names, table.events))
    # ms -> s; the zero-length laughter (an event cut at the clip's end) is dropped.
    assert by['train/a.wav'] == (Event('train/a.wav', 0.5, 1.25, 'cough'), Event('train/a.wav', 2.0, 2.3, 'doorslam'))
    assert by['test/d.wav'] == (Event('test/d.wav', 3.0, 4.0, 'cough'),)
    assert table.splits == ('train', 'train', 'valid', 'test') and table.folds == ()
    assert (out / 'train' / 'a.wav').is_file()  # the audio is HEAR's, through the link
    make_metadata('dcase2016_task2', root / '16000', work_root=work)  # a rebuild repoints its own links


def test_hear_event_builder_refuses_scene_tasks_and_bad_events(tmp_path):
    from evar.tasks.hear_events import hear_events

    root = tmp_path / 'dcase2016_task2-hear2021-full'
    (root / '16000').mkdir(parents=True)
    config = {'task_name': 'dcase2016_task2', 'version': 'hear2021', 'mode': 'full', 'embedding_type': 'scene',
              'prediction_type': 'multilabel', 'split_mode': 'trainvaltest', 'splits': ['train', 'valid', 'test']}
    (root / 'task_metadata.json').write_text(json.dumps(config))
    with pytest.raises(EvarError, match="embedding_type 'scene'"):
        hear_events(root / '16000', out_dir=tmp_path / 'out')
    (root / 'task_metadata.json').write_text(json.dumps({**config, 'embedding_type': 'event'}))
    for body, message in (('{"a.wav": ["cough"]}', 'expected \\{"label"'),
                          ('{"a.wav": [{"label": "x", "start": 5, "end": 1}]}', 'start <= end'),
                          ('{"a.wav": "cough"}', 'expected a list')):
        (root / 'train.json').write_text(body)
        with pytest.raises(EvarError, match=message):
            hear_events(root / '16000', out_dir=tmp_path / 'out')
    with pytest.raises(EvarError, match='out_dir'):
        hear_events(root / '16000')


def test_fold_rounds_are_hears_data_splits_from_folds(tmp_path):
    path = tmp_path / 'events.csv'
    write_events(path, [(f'c{k}', k, [Event(f'c{k}', 0.0, 1.0, 'x')]) for k in (1, 2, 3, 4, 5)])
    table = read_events(path)
    assert table.folds == (1, 2, 3, 4, 5)
    rounds = {name: {s: [table.splits[i] for i in r] for s, r in rows.items()} for name, rows in table.fold_splits()}
    # hear-eval-kit: test fold i, validation fold i + 1 (the first after the last), training the rest.
    assert rounds['fold1'] == {'train': [3, 4, 5], 'valid': [2], 'test': [1]}
    assert rounds['fold5'] == {'train': [2, 3, 4], 'valid': [1], 'test': [5]}
    for splits, message in (('1 train', 'mixes fold numbers and split names'), ('1 2', 'at least 3')):
        path.write_text('file_name,onset_sec,offset_sec,label,split\n'
                        + ''.join(f'c{k},0,1,x,{s}\n' for k, s in enumerate(splits.split())))
        with pytest.raises(EvarError, match=message):
            read_events(path)


@needs_shared
@pytest.mark.slow  # 1 s on an idle 2-core box, up to 10 s when shared
def test_maestro_folds_end_to_end_with_melspec(tmp_path):
    from evar.metadata import make_metadata
    from evar.modes.sed import SedHeadOptions, sed
    from evar.results import read_rows

    splits = [f'fold{i:02d}' for i in range(5)]
    events = {s: {f'{s}_{j}.wav': [_ev('60', 400.0 + 300 * j, 1400.0 + 300 * j), _ev('64', 2500.0, 3200.0)]
                  for j in range(2)} for s in splits}
    root = _hear_event_folder(tmp_path, 'maestro', 'v3.0.0', '5h', splits, events, nfolds=5)
    work = tmp_path / 'work'
    make_metadata('maestro', root / '16000', work_root=work)
    assert read_events(work / '16k' / 'maestro' / 'events.csv').folds == (1, 2, 3, 4, 5)
    scores, post = sed('config/melspec.yaml', 'maestro', work_root=work, results_dir=tmp_path / 'results',
                       logs_dir=tmp_path / 'logs', progress=False, head=SedHeadOptions(hidden=(), max_epochs=2))
    assert (post.median_filter_sec, post.min_duration_sec) == (0.15, 0.05)  # HEAR's grid for maestro
    rows = read_rows(tmp_path / 'results' / 'sed_scores.csv')
    assert len(rows) == 1 and rows[0].metric == 'onset_f1_50ms'
    assert rows[0].score == pytest.approx(scores.onset_f1_50ms, abs=1e-5) and 0 <= scores.onset_f1_50ms <= 1
    log = next((tmp_path / 'logs').glob('*/events-test.csv'))  # every clip decoded once, as its fold's test clip
    lines = [line.split(',') for line in log.read_text().splitlines()[1:]]
    assert {(f[0], f[4]) for f in lines} == {(f'fold{i:02d}/fold{i:02d}_{j}.wav', str(i + 1))
                                             for i in range(5) for j in range(2)}


# ---------------------------------------------------------------- DESED

def _desed(tmp_path: Path) -> Path:
    """DESED's dataset/ layout with real clips: 2 synthetic training soundscapes, 2 validation clips (one listed
    but not downloaded), 2 public evaluation clips, one of them without events."""
    root = tmp_path / 'DESED' / 'dataset'
    tsvs = {
        'metadata/train/synthetic21_train/soundscapes.tsv': ['0.wav\t0.5\t2.0\tDog', '0.wav\t1.0\t3.5\tSpeech',
                                                             '1.wav\t0.0\t1.0\tCat'],
        'metadata/validation/validation.tsv': ['Y1_0_10.wav\t0.25\t1.5\tDishes', 'Ygone_0_10.wav\t0\t1\tDog'],
        'metadata/eval/public.tsv': ['Y2_30_40.wav\t1.0\t3.0\tBlender', 'Y3_0_10.wav\t\t\t'],
    }
    for rel, lines in tsvs.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text('filename\tonset\toffset\tevent_label\n' + '\n'.join(lines) + '\n')
    clips = iter(_clips(5))
    for rel in ('audio/train/synthetic21_train/soundscapes/0.wav', 'audio/train/synthetic21_train/soundscapes/1.wav',
                'audio/validation/validation/Y1_0_10.wav', 'audio/eval/public/Y2_30_40.wav',
                'audio/eval/public/Y3_0_10.wav'):
        _wav(root / rel, next(clips))
    return root


@needs_shared
def test_desed_from_the_publishers_layout(tmp_path, capsys):
    from evar.metadata import make_metadata
    from evar.tasks.desed import desed

    root = _desed(tmp_path)
    work = tmp_path / 'work'
    make_metadata('desed', root, work_root=work)
    assert '1 of 2 clips of' in capsys.readouterr().err  # Ygone is listed but not downloaded
    assert (work / 'metadata' / 'desed.csv').read_text().splitlines() == [
        'file_name,label,split', 'test/Y2_30_40.wav,Blender,test', 'test/Y3_0_10.wav,,test',
        'train/0.wav,"Dog,Speech",train', 'train/1.wav,Cat,train', 'valid/Y1_0_10.wav,Dishes,valid']
    table = read_events(work / '16k' / 'desed' / 'events.csv')
    by = dict(zip(table.file_names, table.events))
    assert by['train/0.wav'] == (Event('train/0.wav', 0.5, 2.0, 'Dog'), Event('train/0.wav', 1.0, 3.5, 'Speech'))
    assert by['test/Y3_0_10.wav'] == ()  # a clip without events stays, for its false positives
    assert (work / '16k' / 'desed' / 'valid' / 'Y1_0_10.wav').is_file()
    with pytest.raises(EvarError, match='pass .*dataset as the dataset root'):
        desed(root.parent, out_dir=tmp_path / 'x')
    bad = root / 'metadata/eval/public.tsv'
    bad.write_text('filename\tonset\toffset\tevent_label\nY2_30_40.wav\t1\t3\tTrain_horn\n')
    with pytest.raises(EvarError, match="'Train_horn' is not one of DESED"):
        desed(root, out_dir=tmp_path / 'x')
    (root / 'metadata/train/synthetic21_train/soundscapes.tsv').unlink()
    with pytest.raises(EvarError, match='synthetic\\*/soundscapes.tsv'):
        desed(root, out_dir=tmp_path / 'x')


@needs_shared
def test_desed_end_to_end_with_psds(tmp_path):
    from evar.metadata import make_metadata
    from evar.modes.sed import SedHeadOptions, sed
    from evar.results import read_rows

    pytest.importorskip('psds_eval')
    work = tmp_path / 'work'
    make_metadata('desed', _desed(tmp_path), work_root=work)
    scores, _ = sed('config/melspec.yaml', 'desed', work_root=work, results_dir=tmp_path / 'results',
                    logs_dir=tmp_path / 'logs', progress=False, head=SedHeadOptions(hidden=(), max_epochs=2))
    assert 0 <= scores.psds1 <= 1 and 0 <= scores.event_macro_f1_200ms <= 1
    row = read_rows(tmp_path / 'results' / 'sed_scores.csv')[0]
    assert row.metric == 'event_macro_f1_200ms' and row.score == pytest.approx(scores.event_macro_f1_200ms, abs=1e-5)


@needs_shared
def test_a_user_task_yaml_with_events(tmp_path):
    """A user's own SED task: a task YAML (data folder, unit length) and --events; the default protocol."""
    from evar.metadata import make_metadata
    from evar.modes.sed import SedHeadOptions, sed
    from evar.results import read_rows

    work = tmp_path / 'work'
    make_metadata('desed', _desed(tmp_path), work_root=work)  # any folder of clips with an events CSV will do
    yaml = tmp_path / 'mine.yaml'
    yaml.write_text(f'name: my_sed\nmetadata: unused.csv\ndata: {work / "16k" / "desed"}\nunit_sec: 4.0\n'
                    'domain: environmental\n')
    scores, post = sed('config/melspec.yaml', str(yaml), events=str(work / '16k' / 'desed' / 'events.csv'),
                       work_root=work, results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs', progress=False,
                       head=SedHeadOptions(hidden=(), max_epochs=1))
    row = read_rows(tmp_path / 'results' / 'sed_scores.csv')[0]
    assert (row.task, row.metric, scores.psds1) == ('my_sed', 'onset_f1_200ms', None)
    assert post.median_filter_sec == 0.25  # HEAR's grid


# ---------------------------------------------------------------- metrics

def test_event_macro_f1_averages_classes():
    ref = [Event('a', 1.0, 2.0, 'dog'), Event('a', 3.0, 4.0, 'dog'), Event('b', 0.0, 1.0, 'cat')]
    est = [Event('a', 1.15, 2.1, 'dog'), Event('a', 5.0, 6.0, 'dog'), Event('b', 0.0, 0.5, 'cat')]
    s = sed_scores(ref, est, ['bird', 'cat', 'dog'], ['a', 'b'])
    # dog: [1.15, 2.1] matches [1, 2] (onset 0.15 <= 0.2, offset 0.1 <= max(0.2, 0.2 * 1 s)); [3, 4] missed, [5, 6]
    # false: P 1/2, R 1/2, F1 1/2. cat: offset 0.5 off > 0.2: F1 0. bird: no event anywhere, left out.
    # Macro F1 = (1/2 + 0) / 2 = 1/4; the micro onset+offset F1 at 200 ms would be 2 * 1 / (3 + 3) = 1/3.
    assert s.event_macro_f1_200ms == pytest.approx(0.25, abs=1e-9)


PSDS_REF = [Event('a', 10.0, 20.0, 'dog'), Event('b', 10.0, 20.0, 'cat')]
PSDS_CAT = [Event('b', 10.0, 20.0, 'cat')]
HOURS = {'a': 3600.0, 'b': 3600.0}  # 2 hours of audio


def test_psds1_on_hand_worked_operating_points():
    pytest.importorskip('psds_eval')
    # Two operating points. High threshold: cat found, dog missed (TPR cat 1, dog 0; no false positive). Low
    # threshold: both found plus 50 one-second false dogs, 50 FP over 2 h = 25 per hour for dog. Per-class
    # step curves over eFPR (alpha_ct 0: eFPR = FPR): dog 0 below 25/h and 1 from 25/h; cat 1 from 0. eTPR =
    # mean - std (alpha_st 1): at 0, (0 + 1)/2 - 1/2 = 0; from 25/h, 1. Area to 100/h: 0 * 25 + 1 * 75 = 75, / 100.
    false = [Event('a', 100.0 + 10 * k, 101.0 + 10 * k, 'dog') for k in range(50)]
    detections = {0.9: PSDS_CAT, 0.1: PSDS_CAT + [PSDS_REF[0]] + false}
    assert psds1(PSDS_REF, detections, HOURS) == pytest.approx(0.75, abs=1e-9)
    assert psds1(PSDS_REF, {0.5: PSDS_REF}, HOURS) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize('onset, offset, value', [
    (10.0, 30.0, 0.0),  # 10 of its 20 s on the reference: 50 % < DTC 0.7, a false positive; dog's TPR 0 -> eTPR 0
    (10.0, 24.0, 1.0),  # 10/14 = 71 % >= 0.7, and it covers the whole reference (GTC 0.7): a true positive
    (12.0, 20.0, 1.0),  # inside the reference, covering 8/10 = 80 % >= GTC 0.7
    (14.0, 20.0, 0.0),  # covers 6/10 = 60 % < GTC 0.7: the dog is missed (and the detection is no false positive)
])
def test_psds1_intersection_criteria_are_scenario_1s(onset, offset, value):
    pytest.importorskip('psds_eval')
    assert psds1(PSDS_REF, {0.5: PSDS_CAT + [Event('a', onset, offset, 'dog')]}, HOURS) == pytest.approx(value)


def test_psds_staircase_area_and_errors():
    x, y = np.array([0.0, 25.0, 150.0]), np.array([0.2, 1.0, 1.0])
    assert staircase_area(x, y, 100.0) == pytest.approx(0.2 * 25 + 1.0 * 75)
    assert staircase_area(np.array([120.0]), np.array([1.0]), 100.0) == 0.0
    with pytest.raises(EvarError, match='no reference event'):
        psds1([], {0.5: []}, HOURS)
    with pytest.raises(EvarError, match='without a duration'):
        psds1(PSDS_REF, {0.5: [Event('zzz', 0.0, 1.0, 'dog')]}, HOURS)


def test_event_task_records():
    for name, folds in (('dcase2016_task2', 1), ('maestro', 5), ('desed', 1)):
        task = BUILTIN_TASKS[name]
        assert task.events and task.writes_audio and task.folds == folds and task.metric == 'mAP'
    assert BUILTIN_TASKS['dcase2016_task2'].unit_sec == BUILTIN_TASKS['maestro'].unit_sec == 120.0
