"""evar.tasks: the registry of built-in task records, user task YAMLs, and the tables every part of evar shares
(audio suffixes, split names, the default work root)."""

import os
import pkgutil
import subprocess
import sys
from dataclasses import FrozenInstanceError

import numpy as np
import pytest
import soundfile as sf

import evar.tasks
from evar.audio import AUDIO_SUFFIXES, load_audio, resolve_audio_path
from evar.data import read_metadata
from evar.errors import EvarError
from evar.metadata import make_metadata
from evar.paths import default_work_root
from evar.prepare_wav import find_audio, prepare_wav
from evar.split_names import SPLIT_ALIASES, SPLITS
from evar.tasks import BUILTIN_TASKS, DOMAINS, SPLIT_FILE_MODES, families, family_module, get_task, validate_task
from evar.tasks.base import Task, task_table
from evar.tasks.build import builders_help, buildable_tasks
from evar.tasks.layout import audio_files

from helpers import ROOT

# ---------------------------------------------------------------- the registry


def family_modules():
    """Every module of the evar.tasks package that holds task records (`TASKS`)."""
    names = [m.name for m in pkgutil.iter_modules(evar.tasks.__path__)]
    return {name: family_module(name) for name in names if hasattr(family_module(name), 'TASKS')}


def test_every_family_record_is_registered_and_every_name_found():
    modules = family_modules()
    assert sorted(modules) == sorted(families())
    registered = {name: family for family in families() for name in family_module(family).TASKS}
    assert list(BUILTIN_TASKS) == [name for name in BUILTIN_TASKS]  # iteration is stable
    assert sorted(registered) == sorted(BUILTIN_TASKS)
    for name in BUILTIN_TASKS:
        task = BUILTIN_TASKS[name]
        assert task.name == name
        assert family_module(registered[name]).TASKS[name] is task
        assert validate_task(task, name) is task
        assert task.domain in DOMAINS, name
        assert task.split_file in SPLIT_FILE_MODES, name
        assert (task.split_file == 'required') == bool(task.split_file_help), name
        assert task.metadata is None and task.data is None, name  # built-in tasks live under the work root
    assert [n for n, t in BUILTIN_TASKS.items() if t.build is None] == ['demo']
    assert [n for n, t in BUILTIN_TASKS.items() if t.writes_audio] == ['dcase2016_task2', 'maestro', 'desed',
                                                                      'piano_pitch', 'sed_words']
    assert {n for n, t in BUILTIN_TASKS.items() if t.split_file != 'none'} == {
        'gtzan', 'cremad', 'cremad_gender', 'surge', 'vc1', 'voxforge', 'libricount', 'voxlingua33', 'vocal_imitation'}


def test_registry_order_is_evars_table_then_evars_own_sets():
    """summarize lists tasks in this order."""
    assert list(BUILTIN_TASKS) == [
        'us8k', 'esc50', 'fsd50k', 'fsdnoisy18k', 'gtzan', 'nsynth', 'nspitch', 'nsvelocity', 'cremad',
        'cremad_gender', 'spcv1', 'spcv2', 'surge', 'vc1', 'vocalsound', 'voxforge', 'as20k', 'as', 'audiocaps',
        'ja_audiocaps', 'clotho',
        # X-ARES's tasks, then HEAR's
        'asvspoof2015', 'fsc', 'libricount', 'librispeech_mf', 'voxlingua33', 'vocal_imitation', 'fsdkaggle2018',
        'fma_small', 'beijing_opera', 'mridangam_stroke', 'mridangam_tonic', 'gtzan_mus_speech', 'beehive_fold0',
        'beehive_fold1', 'gunshot', 'nsynth_pitch_5h', 'nsynth_pitch_50h', 'vox_lingua_top10',
        # HEAR's event tasks and DESED (evar sed)
        'dcase2016_task2', 'maestro', 'desed',
        'fsdd', 'fsdd_speaker', 'ravdess', 'ravdess_gender', 'spcv2_12', 'piano_pitch', 'sed_words', 'demo']


def test_builtin_tasks_is_read_only_and_records_are_frozen():
    with pytest.raises(TypeError):
        BUILTIN_TASKS['esc50'] = BUILTIN_TASKS['us8k']
    with pytest.raises(FrozenInstanceError):
        BUILTIN_TASKS['esc50'].unit_sec = 1.0
    with pytest.raises(KeyError):
        BUILTIN_TASKS['nosuch']
    assert 'esc50' in BUILTIN_TASKS and 'nosuch' not in BUILTIN_TASKS
    assert BUILTIN_TASKS.get('nosuch') is None


def test_builders_help_names_every_builder_in_its_family():
    helps = builders_help()
    for family in families():
        block = getattr(family_module(family), 'HELP', '')
        assert block in helps
        for name, task in family_module(family).TASKS.items():
            if task.build is not None:  # each line starts with the task name(s), padded to column 18
                assert any(line[2:18].replace(',', ' ').split().count(name) for line in block.splitlines()), name
    assert sorted(buildable_tasks()) == sorted(n for n in BUILTIN_TASKS if n != 'demo')


def test_importing_the_registry_imports_no_family_and_a_lookup_only_its_own():
    code = ('import sys, evar.tasks as t\n'
            'fams = lambda: sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("evar.tasks.")\n'
            '                      and m not in ("evar.tasks.base",))\n'
            'print(fams(), "numpy" in sys.modules)\n'
            't.get_task("fsdd_speaker"); "esc50" in t.BUILTIN_TASKS; sorted(t.BUILTIN_TASKS)\n'
            'print(fams())\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                         env={**os.environ, 'PYTHONPATH': str(ROOT)}).stdout.splitlines()
    assert out == ['[] False', "['fsdd', 'layout']"]


# ---------------------------------------------------------------- lookups and user tasks

def test_builtin_tasks_follow_evar():
    t = BUILTIN_TASKS
    assert (t['us8k'].folds, t['us8k'].unit_sec) == (10, 4.0)
    assert (t['esc50'].folds, t['esc50'].unit_sec) == (5, 5.0)
    assert (t['fsd50k'].unit_sec, t['fsd50k'].metric) == (7.6358, 'mAP')
    assert t['as20k'].folder == 'as' and t['as'].balanced and t['as'].metric == 'mAP'
    assert t['nspitch'].folder == 'nsynth' and t['cremad_gender'].folder == 'cremad'
    assert t['vc1'].unit_sec == 8.2 and t['vocalsound'].unit_sec == 4.18 and t['voxforge'].unit_sec == 5.8
    assert t['piano_pitch'].unit_sec == 0.5 and t['gtzan'].unit_sec == 30.0 and t['cremad'].unit_sec == 2.5
    assert (t['spcv2_12'].domain, t['gtzan'].domain, t['esc50'].domain) == ('speech', 'music', 'environmental')


def test_task_errors_and_yaml(tmp_path):
    with pytest.raises(EvarError, match='Unknown task .nosuch.*esc50'):
        get_task('nosuch')
    (tmp_path / 'sub').mkdir()
    spec = tmp_path / 'sub' / 'mytask.yaml'
    spec.write_text('metadata: meta.csv\ndata: ../audio\nunit_sec: 2\nfolds: 3\n')
    task = get_task(str(spec))
    assert task.name == 'mytask' and task.folds == 3 and task.unit_sec == 2.0
    assert task.metadata == tmp_path / 'sub' / 'meta.csv' and task.data == tmp_path / 'sub' / '../audio'
    assert task.build is None and task.domain is None
    spec.write_text('metadata: meta.csv\nunit_sec: 2\n')
    with pytest.raises(EvarError, match="missing key.*data"):
        get_task(str(spec))
    spec.write_text('metadata: a.csv\ndata: .\nunit_sec: 2\nmetric: f1\n')
    with pytest.raises(EvarError, match='metric must be one of'):
        get_task(str(spec))
    spec.write_text('metadata: a.csv\ndata: .\nunit_sec: 2\ndomain: bioacoustics\n')
    assert get_task(str(spec)).domain == 'bioacoustics'
    spec.write_text('metadata: a.csv\ndata: .\nunit_sec: 2\ndomain: birds\n')
    with pytest.raises(EvarError, match=r"mytask\.yaml: domain must be one of .*'bioacoustics'.*got 'birds'"):
        get_task(str(spec))
    with pytest.raises(ValueError, match="'nodomain' must declare its domain"):
        task_table(Task('nodomain', 1.0))
    assert get_task('esc50', unit_sec=2.5).unit_sec == 2.5
    assert get_task('esc50', unit_sec=2.5).build is BUILTIN_TASKS['esc50'].build  # the record keeps its builder
    with pytest.raises(EvarError, match='--unit_sec: unit_sec must be positive'):
        get_task('esc50', unit_sec=0)


def test_data_root_falls_back_to_another_rate(tmp_path):
    (tmp_path / '44k' / 'esc50').mkdir(parents=True)
    root, rate = get_task('esc50').data_root(tmp_path, 16000)
    assert root == tmp_path / '44k' / 'esc50' and rate == 44100
    (tmp_path / '16k' / 'esc50').mkdir(parents=True)
    assert get_task('esc50').data_root(tmp_path, 16000) == (tmp_path / '16k' / 'esc50', 16000)
    assert get_task('fsdd').data_root(tmp_path, 8000) == (tmp_path / '8k' / 'fsdd', 8000)  # not an EVAR rate


# ---------------------------------------------------------------- one table of split names

def test_every_split_alias_reads_the_same_in_metadata_csvs_and_split_files(tmp_path, capsys):
    import evar.data

    assert evar.data.SPLITS is SPLITS and evar.data.SPLIT_ALIASES is SPLIT_ALIASES
    aliases = sorted(SPLIT_ALIASES)
    assert {'val', 'validation', 'dev', 'eval', 'evaluation'} <= set(aliases) and set(SPLIT_ALIASES.values()) == set(SPLITS)
    # A metadata CSV whose split column uses every alias (in upper case too).
    csv_path = tmp_path / 'meta.csv'
    csv_path.write_text('file_name,label,split\n' + ''.join(f'{a}.wav,x,{a.upper()}\n' for a in aliases))
    assert read_metadata(csv_path).splits == tuple(SPLIT_ALIASES[a] for a in aliases)
    # A user's split file (for CREMA-D) with the same aliases, read by the metadata builder.
    root = tmp_path / 'AudioWAV'
    names = [f'10{i:02d}_DFA_ANG_XX' for i in range(len(aliases))]
    for name in names:
        root.mkdir(exist_ok=True)
        sf.write(str(root / f'{name}.wav'), np.zeros(160, np.float32), 16000)
    split = tmp_path / 'split.csv'
    split.write_text('file_name,split\n' + ''.join(f'{n}.wav, {a.upper()} \n' for n, a in zip(names, aliases)))
    path = make_metadata('cremad', root, work_root=tmp_path / 'work', split_file=split, link=False)
    got = dict(line.split(',')[0::2] for line in path.read_text().splitlines()[1:])
    assert got == {f'{n}.wav': SPLIT_ALIASES[a] for n, a in zip(names, aliases)}
    split.write_text(f'file_name,split\n{names[0]}.wav,holdout\n')
    with pytest.raises(EvarError, match=r"split must be one of train/valid/test \(or an alias: val, .*'holdout'"):
        make_metadata('cremad', root, work_root=tmp_path / 'work', split_file=split, link=False)


# ---------------------------------------------------------------- one tuple of audio suffixes

FORMATS = {'.wav': ('WAV', 'PCM_16'), '.flac': ('FLAC', 'PCM_16'), '.ogg': ('OGG', 'VORBIS'),
           '.oga': ('OGG', 'VORBIS'), '.opus': ('OGG', 'OPUS'), '.mp3': ('MP3', 'MPEG_LAYER_III'),
           '.aiff': ('AIFF', 'PCM_16'), '.aif': ('AIFF', 'PCM_16'), '.aifc': ('AIFF', 'PCM_16'),
           '.au': ('AU', 'PCM_16'), '.snd': ('AU', 'PCM_16'), '.caf': ('CAF', 'PCM_16'), '.w64': ('W64', 'PCM_16'),
           '.rf64': ('RF64', 'PCM_16')}


def test_every_audio_suffix_is_read_and_found_by_every_part(tmp_path):
    assert sorted(FORMATS) == sorted(AUDIO_SUFFIXES)
    src = tmp_path / 'src'
    src.mkdir()
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    file_of = {s: f'{s[1:]}{s}' for s in AUDIO_SUFFIXES}
    for suffix, (fmt, subtype) in FORMATS.items():
        rate = 48000 if subtype == 'OPUS' else 16000  # Opus codes 48 kHz
        sf.write(str(src / file_of[suffix]), tone if rate == 16000 else np.repeat(tone, 3), rate, format=fmt,
                 subtype=subtype)
    for other in ('clip.m4a', 'clip.aac', 'clip.wma', 'notes.txt'):  # containers libsndfile cannot read
        (src / other).write_bytes(b'\0' * 64)
    sf.write(str(src / 'upper.FLAC'), tone, 16000)  # suffixes match in any case
    expected = sorted([*file_of.values(), 'upper.FLAC'])
    # The reader decodes each of them (lossy codecs: the tone's level survives).
    for name in expected:
        wav, _ = load_audio(src / name, 16000)
        assert abs(len(wav) - 16000) < 2000 and 0.15 < np.sqrt(np.mean(wav[4000:12000] ** 2)) < 0.25, name
    # The metadata builders, prepare_wav and the loader's extension fallback all see exactly these files.
    assert audio_files(src) == expected
    assert [p.as_posix() for p in find_audio(src, AUDIO_SUFFIXES)] == expected
    s = prepare_wav(src, tmp_path / 'out', 16000, workers=1, progress=False)
    assert (s.converted, s.failed) == (len(expected), [])
    for suffix in AUDIO_SUFFIXES:  # a CSV naming another extension finds the file on disk
        assert resolve_audio_path(src, f'{suffix[1:]}.flac' if suffix != '.flac' else 'flac.wav') == src / file_of[suffix]
    with pytest.raises(EvarError, match=r'cannot read \.m4a files'):
        prepare_wav(src, tmp_path / 'out2', 16000, suffixes='wav,m4a')


# ---------------------------------------------------------------- the work root

def test_default_work_root_and_evar_metadata_honour_evar_work(tmp_path, monkeypatch):
    monkeypatch.delenv('EVAR_WORK', raising=False)
    assert default_work_root() == evar.tasks.base.Path('work')
    monkeypatch.setenv('EVAR_WORK', str(tmp_path / 'elsewhere'))
    assert default_work_root() == tmp_path / 'elsewhere'
    readers = [p.relative_to(ROOT).as_posix() for p in (ROOT / 'evar').rglob('*.py') if "environ.get('EVAR_WORK'" in
               p.read_text() or 'environ["EVAR_WORK"]' in p.read_text()]
    assert readers == ['evar/paths.py']  # one definition for lineareval, the metadata tool and the rest
    root = tmp_path / 'fsdd'
    root.mkdir()
    sf.write(str(root / '3_theo_7.wav'), np.zeros(800, np.float32), 8000)
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'EVAR_WORK': str(tmp_path / 'envwork')}
    run = subprocess.run([sys.executable, '-m', 'evar.metadata', 'fsdd', str(root)], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / 'envwork/metadata/fsdd.csv').read_text() == 'file_name,label,split\n3_theo_7.wav,3,train\n'
    assert (tmp_path / 'envwork/8k/fsdd').is_symlink() and not (tmp_path / 'work').exists()
    run = subprocess.run([sys.executable, '-m', 'evar.metadata', 'fsdd', str(root), '--work_root', 'w2'],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and (tmp_path / 'w2/metadata/fsdd.csv').is_file()  # the flag wins
