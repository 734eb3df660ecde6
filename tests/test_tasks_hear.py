"""HEAR 2021's tasks (evar/tasks/hear.py): the generic builder on small HEAR task folders written here as
hear-preprocess writes them (task_metadata.json, <split>.json, <rate>/<split>/<clip>.wav), from real clips in
../shared/data; each record against hear-preprocess's task configurations; malformed folders."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from evar.audio import audio_sample_rate, load_audio, resolve_audio_path
from evar.data import read_metadata
from evar.errors import EvarError
from evar.metadata import make_metadata
from evar.tasks import BUILTIN_TASKS, get_task
from evar.tasks.hear import HearTask, TASKS, hear, hear_record, hear_task_of

from helpers import SHARED, needs_shared

DATA = SHARED / 'data'


def task_metadata(task: HearTask, prediction_type='multiclass', embedding_type='scene', **changes) -> dict:
    """A task configuration as hear-preprocess's runner leaves it in task_metadata.json (mode applied, `modes`
    removed, `splits` added)."""
    splits = [f'fold{i:02d}' for i in range(task.nfolds)] if task.nfolds else ['train', 'valid', 'test']
    config = {'task_name': task.task_name, 'version': task.version, 'embedding_type': embedding_type,
              'prediction_type': prediction_type,
              'split_mode': 'new_split_kfold' if task.nfolds else 'trainvaltest',
              'sample_duration': task.sample_duration, 'evaluation': ['top1_acc', 'mAP', 'd_prime', 'aucroc'],
              'download_urls': [{'split': 'train', 'url': 'https://zenodo.org/record/0/files/x.zip'}],
              'default_mode': task.mode, 'mode': task.mode, 'splits': splits, 'tmp_dir': '_workdir'}
    if task.nfolds:
        config['nfolds'] = task.nfolds
    else:
        config['max_task_duration_by_split'] = {'train': None, 'valid': None, 'test': None}
    config.update(changes)
    return config


def write_json(path: Path, obj) -> Path:
    """JSON as hear-preprocess writes it (json.dump with indent=True)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f, indent=True)
    return path


def hear_wav(path: Path, source: Path, seconds: float, rate: int) -> np.ndarray:
    """A real 16 kHz clip written as HEAR's wav: resampled to `rate`, trimmed or zero-padded to `seconds`, 16-bit
    PCM. Returns the samples written."""
    x, sr = sf.read(str(source), dtype='float32')
    assert sr == 16000
    y = resample_poly(x, rate, sr).astype(np.float32) if rate != sr else x
    n = int(round(seconds * rate))
    y = np.pad(y[:n], (0, max(0, n - len(y))))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, rate, subtype='PCM_16')
    return y


def hear_folder(base: Path, task: HearTask, labels: dict, sources: dict, rates=(48000,), **changes) -> Path:
    """A HEAR task folder `base/<task_name>-<version>-<mode>` with `labels` (split -> {clip: [labels]}) and each
    clip's audio from `sources` (clip -> real file) at each of `rates`."""
    root = base / task.folder_name
    write_json(root / 'task_metadata.json', task_metadata(task, **changes))
    for split, clips in labels.items():
        write_json(root / f'{split}.json', clips)
        for clip in clips:
            for rate in rates:
                if clip in sources:
                    hear_wav(root / str(rate) / split / clip, sources[clip], task.sample_duration, rate)
    vocabulary = sorted({str(v) for clips in labels.values() for values in clips.values() for v in values})
    (root / 'labelvocabulary.csv').write_text('idx,label\n' + ''.join(f'{i},{v}\n' for i, v in enumerate(vocabulary)))
    return root


def csv_rows(path: Path) -> list:
    return [tuple(line.split(',')) for line in path.read_text().splitlines()[1:]]


# ---------------------------------------------------------------- the records

# From hear-preprocess's generic_task_config of each task (task_name, version, default mode as released in
# HEAR 2021, sample_duration, nfolds) and the HEAR paper's task groups.
EXPECTED = {
    'beijing_opera': ('beijing_opera-v1.0-hear2021-full', 4.77, 5, 'music'),
    'mridangam_stroke': ('mridangam_stroke-v1.5-full', 0.81, 5, 'music'),
    'mridangam_tonic': ('mridangam_tonic-v1.5-full', 0.81, 5, 'music'),
    'gtzan_mus_speech': ('tfds_gtzan_music_speech-1.0.0-full', 30.0, 10, 'music'),
    'beehive_fold0': ('beehive_states_fold0-v2-full', 600.0, 1, 'bioacoustics'),
    'beehive_fold1': ('beehive_states_fold1-v2-full', 600.0, 1, 'bioacoustics'),
    'gunshot': ('gunshot_triangulation-v1.0-full', 1.5, 7, 'environmental'),
    'nsynth_pitch_5h': ('nsynth_pitch-v2.2.3-5h', 4.0, 1, 'music'),
    'nsynth_pitch_50h': ('nsynth_pitch-v2.2.3-50h', 4.0, 1, 'music'),
    'vox_lingua_top10': ('vox_lingua_top10-hear2021-full', 18.64, 5, 'speech'),
}


def test_every_record_is_hears_task():
    assert list(TASKS) == list(EXPECTED)
    for name, (folder, unit_sec, folds, domain) in EXPECTED.items():
        task = BUILTIN_TASKS[name]
        assert task is TASKS[name] and task.name == name
        assert hear_task_of(task).folder_name == folder, name
        assert (task.unit_sec, task.folds, task.domain) == (unit_sec, folds, domain), name
        metric = 'roc_auc_ovr' if name.startswith('beehive') else 'accuracy'  # HEAR's primary score of each
        assert (task.metric, task.split_file, task.writes_audio, task.folder) == (metric, 'none', False, name)
        assert hear_task_of(task).sample_duration == task.unit_sec and max(hear_task_of(task).nfolds, 1) == folds


# ---------------------------------------------------------------- the builder on HEAR's layout

@needs_shared
def test_kfold_task_folds_labels_rates_and_links(tmp_path, capsys):
    """beijing_opera as HEAR distributes it, at 48 and 16 kHz: fold00..fold04 -> folds 1..5, one label a clip."""
    task = hear_task_of(BUILTIN_TASKS['beijing_opera'])
    esc = sorted((DATA / 'ESC-50/audio').glob('4-*.flac'))[:6]
    names = [f'{p.stem}.wav' for p in esc]
    sources = dict(zip(names, esc))
    labels = {'fold00': {names[0]: ['bangu']}, 'fold01': {names[1]: ['daluo']}, 'fold02': {names[2]: ['naobo']},
              'fold03': {names[3]: ['xiaoluo']}, 'fold04': {names[4]: ['bangu'], names[5]: ['naobo'],
                                                            'lost.wav': ['daluo']}}  # lost.wav: not on disk
    root = hear_folder(tmp_path / 'tasks', task, labels, sources, rates=(48000, 16000))
    work = tmp_path / 'work'
    path = make_metadata('beijing_opera', root / '48000', work_root=work)
    expected = sorted([(f'fold00/{names[0]}', 'bangu', '1'), (f'fold01/{names[1]}', 'daluo', '2'),
                       (f'fold02/{names[2]}', 'naobo', '3'), (f'fold03/{names[3]}', 'xiaoluo', '4'),
                       (f'fold04/{names[4]}', 'bangu', '5'), (f'fold04/{names[5]}', 'naobo', '5')])
    assert path == work / 'metadata/beijing_opera.csv'
    assert path.read_text().splitlines()[0] == 'file_name,label,fold' and csv_rows(path) == expected
    err = capsys.readouterr().err
    assert 'lost.wav' in err and '1 of 7 files' in err
    assert Path(os.readlink(work / '48k/beijing_opera')) == (root / '48000').resolve()
    first = csv_rows(path)
    # The 16 kHz folder gives the same CSV and its own link; a 16 kHz model then reads HEAR's 16 kHz clips.
    make_metadata('beijing_opera', root / '16000', work_root=work)
    assert csv_rows(path) == first
    assert Path(os.readlink(work / '16k/beijing_opera')) == (root / '16000').resolve()
    assert get_task('beijing_opera').data_root(work, 16000) == (work / '16k/beijing_opera', 16000)
    meta = read_metadata(path)
    assert meta.folds == (1, 2, 3, 4, 5, 5) and meta.labels[3] == ('xiaoluo',)
    clip = resolve_audio_path(work / '48k/beijing_opera', meta.file_names[0])
    wav, rate = load_audio(clip, None)
    assert rate == 48000 == audio_sample_rate(clip) and len(wav) == round(4.77 * 48000)
    # The same real clip at HEAR's two rates: the 48 kHz one resampled to 16 kHz matches the 16 kHz one.
    low, _ = load_audio(work / '16k/beijing_opera' / meta.file_names[0], None)
    down, _ = load_audio(clip, 16000)
    assert len(low) == len(down) == round(4.77 * 16000)
    assert np.corrcoef(low, down)[0, 1] > 0.99


@needs_shared
def test_trainvaltest_task_keeps_hears_splits_and_numeric_labels(tmp_path):
    """nsynth_pitch 5h: train/valid/test as HEAR gives them; pitches written as JSON numbers are read as text."""
    task = hear_task_of(BUILTIN_TASKS['nsynth_pitch_5h'])
    notes = {'keyboard_acoustic_000-060-010.wav': ('C4', 60), 'keyboard_acoustic_000-069-010.wav': ('A4', 69),
             'keyboard_acoustic_000-072-010.wav': ('C5', 72), 'keyboard_acoustic_000-057-010.wav': ('A3', 57)}
    sources = {clip: DATA / f'piano/{note}v10.flac' for clip, (note, _) in notes.items()}
    clips = list(notes)
    labels = {'train': {clips[0]: [60], clips[1]: [69]}, 'valid': {clips[2]: [72]}, 'test': {clips[3]: [57]}}
    root = hear_folder(tmp_path / 'tasks', task, labels, sources, rates=(16000,))
    path = make_metadata('nsynth_pitch_5h', root / '16000', work_root=tmp_path / 'work')
    assert path.read_text() == ('file_name,label,split\n'
                                f'test/{clips[3]},57,test\ntrain/{clips[0]},60,train\n'
                                f'train/{clips[1]},69,train\nvalid/{clips[2]},72,valid\n')
    # The 5h folder is not the 50h task's: the builder says which folder that task reads.
    with pytest.raises(EvarError, match=r'task_metadata.json is HEAR.s task nsynth_pitch in mode 5h.*'
                                         r'nsynth_pitch-v2.2.3-50h'):
        make_metadata('nsynth_pitch_50h', root / '16000', work_root=tmp_path / 'work')


def test_generic_builder_reads_any_scene_task_multilabel_included(tmp_path, capsys):
    """`hear` without a record reads any HEAR scene folder; labels of a multilabel clip joined, sorted."""
    task = HearTask('fsd50k', 'v1.0', 'full', 0.01, prediction_type='multilabel')
    labels = {'train': {'1.wav': ['Dog', 'Bark']}, 'valid': {'2.wav': ['Cat']}, 'test': {'3.wav': ['Cat', 'Dog']}}
    root = tmp_path / task.folder_name
    write_json(root / 'task_metadata.json', task_metadata(task, prediction_type='multilabel'))
    for split, clips in labels.items():
        write_json(root / f'{split}.json', clips)
        for clip in clips:
            (root / '48000' / split).mkdir(parents=True, exist_ok=True)
            sf.write(str(root / '48000' / split / clip), np.zeros(480, np.float32), 48000)
    assert sorted(hear(root / '48000')) == [('test/3.wav', 'Cat,Dog', 'test'), ('train/1.wav', 'Bark,Dog', 'train'),
                                            ('valid/2.wav', 'Cat', 'valid')]
    # Another version than HEAR 2021's, or another clip length, is read with a warning.
    write_json(root / 'task_metadata.json', task_metadata(task, 'multilabel', version='v9', sample_duration=2.0))
    rows = hear(root / '48000', task=task)
    err = capsys.readouterr().err
    assert len(rows) == 3 and 'version v9 of fsd50k' in err and 'sample_duration 2.0 s' in err
    assert hear_record('fsd50k', task, 'general').metric == 'mAP'
    with pytest.raises(EvarError, match=r'prediction_type multilabel; HEAR.s fsd50k-v1.0-full is multiclass'):
        hear(root / '48000', task=HearTask('fsd50k', 'v1.0', 'full', 0.01))
    # The task folder itself is refused, naming its rate folders.
    with pytest.raises(EvarError, match=r'HEAR task folder: pass one of its sample-rate folders .*48000'):
        hear(root)
    with pytest.raises(EvarError, match=r'Missing .*task_metadata.json'):
        hear(tmp_path / 'nothing' / '48000')


# ---------------------------------------------------------------- malformed folders

GUNSHOT = hear_task_of(TASKS['gunshot'])


def gunshot_folder(tmp_path: Path, **changes) -> Path:
    """A gunshot folder (7 folds, one silent clip each) whose task_metadata.json has `changes`."""
    root = tmp_path / GUNSHOT.folder_name
    write_json(root / 'task_metadata.json', task_metadata(GUNSHOT, **changes))
    for k in range(7):
        write_json(root / f'fold{k:02d}.json', {f'mic1_shot{k}_fid{k + 1}.wav': ['mic1']})
        (root / '48000' / f'fold{k:02d}').mkdir(parents=True)
        sf.write(str(root / '48000' / f'fold{k:02d}' / f'mic1_shot{k}_fid{k + 1}.wav'), np.zeros(72000, np.float32),
                 48000)
    return root


def test_gunshot_is_hears_seven_firearm_folds(tmp_path):
    rows = TASKS['gunshot'].build(gunshot_folder(tmp_path) / '48000')
    assert sorted(rows) == [(f'fold{k:02d}/mic1_shot{k}_fid{k + 1}.wav', 'mic1', k + 1) for k in range(7)]


@pytest.mark.parametrize('changes,message', [
    ({'split_mode': 'random'}, r'split_mode must be one of'),
    ({'nfolds': 5}, r"splits must be \['fold00', 'fold01', 'fold02', 'fold03', 'fold04'\] for nfolds 5"),
    ({'nfolds': '7'}, r'needs nfolds, an integer >= 2'),
    ({'splits': 'fold00'}, r'splits must be a list'),
    ({'sample_duration': '1.5'}, r'sample_duration must be a number'),
    ({'task_name': None}, r'task_metadata.json is HEAR.s task None'),
    ({'embedding_type': 'event'}, r"embedding_type 'event'.*scene tasks only"),
    ({'prediction_type': 'regression'}, r'prediction_type must be multiclass or multilabel'),
])
def test_malformed_task_metadata_is_named(tmp_path, changes, message):
    root = gunshot_folder(tmp_path, **changes)
    with pytest.raises(EvarError, match=message) as e:
        TASKS['gunshot'].build(root / '48000')
    assert str(root / 'task_metadata.json') in str(e.value)


def test_unreadable_or_incomplete_task_metadata_is_named(tmp_path):
    root = gunshot_folder(tmp_path)
    path = root / 'task_metadata.json'
    path.write_text('{"task_name": "gunshot_triangulation",')
    with pytest.raises(EvarError, match=rf'{path} is not valid JSON'):
        TASKS['gunshot'].build(root / '48000')
    write_json(path, ['gunshot_triangulation'])
    with pytest.raises(EvarError, match=rf'{path}: expected a JSON object'):
        TASKS['gunshot'].build(root / '48000')
    config = task_metadata(GUNSHOT)
    del config['splits'], config['mode']
    write_json(path, config)
    with pytest.raises(EvarError, match=rf"{path} lacks the key\(s\) \['mode', 'splits'\]"):
        TASKS['gunshot'].build(root / '48000')


@pytest.mark.parametrize('content,message', [
    (None, r'Missing .*fold03.json: expected HEAR.s labels of the fold03 split'),
    ('{"a.wav": ["mic1"]', r'fold03.json is not valid JSON'),
    ('["a.wav"]', r'fold03.json: expected an object of clip file name -> list of labels'),
    ('{"a.wav": "mic1"}', r"fold03.json: clip 'a.wav' has labels 'mic1'; expected a non-empty list"),
    ('{"a.wav": []}', r"fold03.json: clip 'a.wav' has labels \[\]"),
    ('{"a.wav": ["mic1", "mic2"]}', r"fold03.json: clip 'a.wav' has 2 labels .*a multiclass task has one"),
    ('{"a.wav": [{"label": "mic1", "start": 0.0, "end": 1.0}]}', r'fold03.json: .*event tasks list timestamped'),
])
def test_missing_or_malformed_label_file_is_named(tmp_path, content, message):
    root = gunshot_folder(tmp_path)
    if content is None:
        (root / 'fold03.json').unlink()
    else:
        (root / 'fold03.json').write_text(content)
    with pytest.raises(EvarError, match=message):
        TASKS['gunshot'].build(root / '48000')


def test_a_rate_folder_without_the_listed_clips_is_refused(tmp_path):
    root = gunshot_folder(tmp_path)
    (root / '16000').mkdir()
    with pytest.raises(EvarError, match=r'None of the 7 files listed in .*fold00,fold01.*is under .*16000'):
        TASKS['gunshot'].build(root / '16000')
    with pytest.raises(EvarError, match=r"must be a HEAR task folder's sample-rate folder.*'audio'"):
        (root / 'audio').mkdir()
        hear(root / 'audio')
