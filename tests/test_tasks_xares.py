"""Metadata builders of X-ARES's public tasks (evar/tasks/{asvspoof,fluent_speech_commands,libricount,librispeech,
voxlingua,vocal_imitation,fsdkaggle2018,fma}.py): each on a small copy of its publisher's layout made here, rows
checked exactly, and one bad layout each."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evar.data import read_metadata
from evar.errors import EvarError
from evar.metadata import make_metadata
from evar.tasks import BUILTIN_TASKS

from helpers import SHARED, needs_shared


def clip(path: Path, sr: int = 16000) -> Path:
    """A 10 ms noise clip at `path` (format from its extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.random.default_rng(0).uniform(-0.1, 0.1, sr // 100).astype(np.float32), sr)
    return path


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding='utf-8')
    return path


def rows_of(task, root, tmp_path, split_file=None, link=False):
    """The metadata CSV `task`'s builder writes from `root`: (header, [(file_name, label, split|fold)])."""
    path = make_metadata(task, root, work_root=tmp_path / 'work', split_file=split_file, link=link)
    with open(path, newline='', encoding='utf-8') as f:
        reader = csv.reader(f)
        return next(reader), [tuple(row) for row in reader]


def refused(task, root, tmp_path, match, split_file=None):
    """Asserts that building `task` from `root` raises EvarError with a message matching `match`."""
    with pytest.raises(EvarError, match=match):
        rows_of(task, root, tmp_path, split_file=split_file)


def test_records_follow_xares():
    """Domains, folds and split-file modes of the new tasks (X-ARES: libricount 5 folds, vocal imitation 3)."""
    t = BUILTIN_TASKS
    assert {n: t[n].domain for n in ('asvspoof2015', 'fsc', 'libricount', 'librispeech_mf', 'voxlingua33',
                                     'vocal_imitation', 'fsdkaggle2018', 'fma_small')} == {
        'asvspoof2015': 'speech', 'fsc': 'speech', 'libricount': 'speech', 'librispeech_mf': 'speech',
        'voxlingua33': 'speech', 'vocal_imitation': 'speech', 'fsdkaggle2018': 'general', 'fma_small': 'music'}
    assert (t['libricount'].folds, t['vocal_imitation'].folds) == (5, 3)
    assert {n: t[n].split_file for n in ('libricount', 'vocal_imitation', 'voxlingua33', 'fsc')} == {
        'libricount': 'required', 'vocal_imitation': 'required', 'voxlingua33': 'optional', 'fsc': 'none'}


def test_asvspoof2015(tmp_path):
    root = tmp_path / 'ASVspoof2015'
    for name in ('T1/T1_1000001', 'T1/T1_1000011', 'D1/D1_1000002', 'E1/E1_EN10001', 'E1/E1_EN10002'):
        clip(root / f'wav/{name}.wav')
    text(root / 'CM_protocol/cm_train.trn', 'T1 T1_1000001 human human\nT1 T1_1000011 S1 spoof\n')
    text(root / 'CM_protocol/cm_develop.ndx.txt', 'D1 D1_1000002 S5 spoof\n')  # the .txt spelling
    text(root / 'CM_protocol/cm_evaluation.ndx', 'E1 E1_EN10001 human human\n\nE1 E1_EN10002 S10 spoof\n')
    header, rows = rows_of('asvspoof2015', root, tmp_path)
    assert header == ['file_name', 'label', 'split']
    assert rows == [('wav/D1/D1_1000002.wav', 'spoof', 'valid'), ('wav/E1/E1_EN10001.wav', 'human', 'test'),
                    ('wav/E1/E1_EN10002.wav', 'spoof', 'test'), ('wav/T1/T1_1000001.wav', 'human', 'train'),
                    ('wav/T1/T1_1000011.wav', 'spoof', 'train')]
    text(root / 'CM_protocol/cm_evaluation.ndx', 'E1 E1_EN10001\n')  # the keyless pre-challenge list
    refused('asvspoof2015', root, tmp_path, r'cm_evaluation.ndx line 1: expected')
    (root / 'CM_protocol/cm_evaluation.ndx').unlink()
    refused('asvspoof2015', root, tmp_path, r'Missing .*CM_protocol/cm_evaluation.ndx: expected ASVspoof 2015\'s test')


FSC_HEADER = ',path,speakerId,transcription,action,object,location\n'


def fsc_layout(root: Path, ext: str = '.wav'):
    """Three speakers' clips under the publisher's names; the CSVs name .wav whatever `ext` is on disk."""
    names = {'train': ('2BqVo8kVB2Skwgyb', '0a3129c0-4474-11e9-a9a5-5dbec3b8816a', 'Turn the lights on',
                       'activate,lights,none'),
             'valid': ('7B4XmNppyrCK977p', '1b7f2d80-4474-11e9-a9a5-5dbec3b8816a',
                       'It’s too loud, turn it down', 'decrease,volume,none'),
             'test': ('4aGjX3AG5xcxeL7a', '2c8a3f90-4474-11e9-a9a5-5dbec3b8816a', 'Lights on', 'activate,lights,none')}
    for split, (speaker, uid, words, slots) in names.items():
        clip(root / f'wavs/speakers/{speaker}/{uid}{ext}')
        quoted = f'"{words}"' if ',' in words else words
        text(root / f'data/{split}_data.csv', FSC_HEADER + f'0,wavs/speakers/{speaker}/{uid}.wav,{speaker},'
             f'{quoted},{slots}\n')
    return names


def test_fsc(tmp_path):
    root = tmp_path / 'fluent_speech_commands_dataset'
    names = fsc_layout(root)
    _, rows = rows_of('fsc', root, tmp_path)
    assert rows == sorted((f'wavs/speakers/{s}/{u}.wav', w, split) for split, (s, u, w, _) in names.items())
    # The label with a comma is one class, read back whole.
    meta = read_metadata(tmp_path / 'work/metadata/fsc.csv')
    assert sorted(meta.labels) == [('It’s too loud, turn it down',), ('Lights on',), ('Turn the lights on',)]
    (root / 'data/test_data.csv').unlink()
    refused('fsc', root, tmp_path, r'Missing .*data/test_data.csv: expected Fluent Speech Commands\' test')


@needs_shared
def test_fsc_real_clips_and_link(tmp_path):
    """Real FSDD recordings (16 kHz FLAC) under FSC's names: the CSVs' .wav names resolve to the .flac files and
    the audio folder is linked under the rate the clips declare."""
    root = tmp_path / 'fluent_speech_commands_dataset'
    names = fsc_layout(root, ext='.flac')
    sources = sorted((SHARED / 'data/fsdd/recordings').glob('*.flac'))[:3]
    for (speaker, uid, _, _), source in zip(names.values(), sources):
        shutil.copyfile(source, root / f'wavs/speakers/{speaker}/{uid}.flac')
    _, rows = rows_of('fsc', root, tmp_path, link=True)
    assert [r[0] for r in rows] == sorted(f'wavs/speakers/{s}/{u}.flac' for s, u, _, _ in names.values())
    assert (tmp_path / 'work/16k/fsc').resolve() == root.resolve()


def test_libricount_folds(tmp_path, capsys):
    root = tmp_path / 'LibriCount10-0dB'
    for name in ('0_0a1b', '3_7f2e', '10_c4d9', '5_9999'):
        clip(root / f'test/{name}.wav')
    text(root / 'test/3_7f2e.json', '[]')  # the per-clip annotations are not read
    folds = text(tmp_path / 'folds.csv', 'file_name,fold\ntest/0_0a1b.wav,1\n3_7f2e,2\n10_c4d9.wav,5\n')
    header, rows = rows_of('libricount', root, tmp_path, split_file=folds)
    assert header == ['file_name', 'label', 'fold']
    assert rows == [('test/0_0a1b.wav', '0', '1'), ('test/10_c4d9.wav', '10', '5'), ('test/3_7f2e.wav', '3', '2')]
    assert '1 clips are not in the split file' in capsys.readouterr().err  # 5_9999 is unlisted
    refused('libricount', root, tmp_path, 'This task needs --split_file: LibriCount publishes no split')
    bad = text(tmp_path / 'bad.csv', 'file_name,fold\n3_7f2e,6\n')
    refused('libricount', root, tmp_path, r"fold must be 1..5, got 6 for '3_7f2e'", split_file=bad)
    clip(root / 'test/11_dead.wav')
    refused('libricount', root, tmp_path, r'11_dead.wav: LibriCount10 mixes 0..10 talkers', split_file=folds)
    refused('libricount', tmp_path / 'work', tmp_path, 'No LibriCount audio', split_file=folds)


SPEAKERS = """\
; Some comment lines
;ID  |SEX| SUBSET           |MINUTES| NAME
19   | F | train-clean-100  | 25.19 | Patricia Oakley
60   | M | train-clean-100  | 20.18 | |CBW|Simon
84   | F | dev-clean        |  8.02 | Christie Nowak
1089 | M | test-clean       |  8.00 | Nathan
"""


def test_librispeech_mf(tmp_path):
    root = tmp_path / 'LibriSpeech'
    text(root / 'SPEAKERS.TXT', SPEAKERS)
    for name in ('train-clean-100/19/198/19-198-0001', 'train-clean-100/60/121082/60-121082-0000',
                 'dev-clean/84/121123/84-121123-0000', 'test-clean/1089/134686/1089-134686-0000'):
        clip(root / f'{name}.flac')
    text(root / 'train-clean-100/19/198/19-198.trans.txt', '19-198-0001 TEXT\n')
    _, rows = rows_of('librispeech_mf', root, tmp_path)
    assert rows == [('dev-clean/84/121123/84-121123-0000.flac', 'female', 'valid'),
                    ('test-clean/1089/134686/1089-134686-0000.flac', 'male', 'test'),
                    ('train-clean-100/19/198/19-198-0001.flac', 'female', 'train'),
                    ('train-clean-100/60/121082/60-121082-0000.flac', 'male', 'train')]
    clip(root / 'test-clean/2300/131720/2300-131720-0000.flac')
    refused('librispeech_mf', root, tmp_path, r'speaker 2300 is not in .*SPEAKERS.TXT')
    shutil.rmtree(root / 'dev-clean')
    refused('librispeech_mf', root, tmp_path, r"Missing .*LibriSpeech/dev-clean: expected LibriSpeech's dev-clean")


def test_voxlingua33(tmp_path, capsys):
    root = tmp_path / 'voxlingua107'
    train = ('en/3Qw9yN0x5bE__U__S1---0001.230-0007.880', 'en/3Qw9yN0x5bE__U__S2---0009.000-0013.410',
             'fi/kL0pPz2Vw1c__U__S0---0000.000-0004.500', 'xh/aaaaaaaaaaa__U__S0---0000.000-0004.000')
    dev = ('dev/en/Zm1xJr8kq3A__U__S3---0021.020-0030.000', 'dev/fi/oO7bXc1Lk2s__U__S1---0005.000-0012.000')
    for name in train + dev:
        clip(root / f'{name}.wav')
    _, rows = rows_of('voxlingua33', root, tmp_path)
    assert rows == [(f'{dev[0]}.wav', 'en', 'test'), (f'{dev[1]}.wav', 'fi', 'test'),
                    (f'{train[0]}.wav', 'en', 'train'), (f'{train[1]}.wav', 'en', 'train'),
                    (f'{train[2]}.wav', 'fi', 'train')]  # xh has no development data: not a class
    assert 'holds 2 language folders; the published development set has 33' in capsys.readouterr().err
    subset = text(tmp_path / 'subset.csv', f'file_name,split\n{train[1]}.wav,train\n{dev[1]},test\n')
    _, rows = rows_of('voxlingua33', root, tmp_path, split_file=subset)  # a training subset, as X-ARES uses
    assert rows == [(f'{dev[1]}.wav', 'fi', 'test'), (f'{train[1]}.wav', 'en', 'train')]
    shutil.rmtree(root / 'fi')
    refused('voxlingua33', root, tmp_path, r"Missing .*voxlingua107/fi: expected VoxLingua107's training clips of "
                                        r"language 'fi'")
    shutil.rmtree(root / 'dev')
    refused('voxlingua33', root, tmp_path, r'Missing .*voxlingua107/dev: expected')


def test_vocal_imitation(tmp_path, capsys):
    root = tmp_path / 'VocalImitationSet'
    refs = ('000Animal_Domestic animals_ pets_Cat_Growling_reference.wav', '041Human sounds_Hands_Clapping_reference.wav')
    text(root / 'vocal_imitations.txt',
         'reference_filename\timitation_filename\tincluded\tparticipant_id\n'
         f'{refs[0]}\t000Animal_Domestic animals_ pets_Cat_Growling - 0 - 1.wav\t1\tp01\n'
         f'{refs[0]}\t000Animal_Domestic animals_ pets_Cat_Growling - 1 - 2.wav\t0\tp02\n'
         f'{refs[1]}\t041Human sounds_Hands_Clapping - 0 - 3.wav\tTrue\tp03\n')
    clip(root / 'vocal_imitations/included/000Animal_Domestic animals_ pets_Cat_Growling - 0 - 1.wav')
    clip(root / 'vocal_imitations/included/041Human sounds_Hands_Clapping - 0 - 3.wav')
    clip(root / 'vocal_imitations/excluded/000Animal_Domestic animals_ pets_Cat_Growling - 1 - 2.wav')
    folds = text(tmp_path / 'folds.csv', 'file_name,fold\n000Animal_Domestic animals_ pets_Cat_Growling - 0 - 1.wav,3\n'
                 '041Human sounds_Hands_Clapping - 0 - 3,1\n')
    header, rows = rows_of('vocal_imitation', root, tmp_path, split_file=folds)
    assert header == ['file_name', 'label', 'fold']
    assert rows == [
        ('vocal_imitations/included/000Animal_Domestic animals_ pets_Cat_Growling - 0 - 1.wav',
         '000Animal_Domestic animals_ pets_Cat_Growling_reference', '3'),
        ('vocal_imitations/included/041Human sounds_Hands_Clapping - 0 - 3.wav',
         '041Human sounds_Hands_Clapping_reference', '1')]
    err = capsys.readouterr().err  # the excluded imitation is not missed; fold 2 is empty here
    assert 'not in the split file' not in err and 'no clip under' in err and 'is in fold(s) 2 ' in err
    (root / 'vocal_imitations.txt').unlink()
    refused('vocal_imitation', root, tmp_path, r'Missing .*vocal_imitations.txt: expected VocalImitationSet', split_file=folds)
    text(root / 'vocal_imitations.txt', 'reference_filename\timitation_filename\n')
    refused('vocal_imitation', root, tmp_path, r"lacks the column\(s\) \['included'\]", split_file=folds)


def test_fsdkaggle2018(tmp_path):
    root = tmp_path / 'FSDKaggle2018'
    text(root / 'FSDKaggle2018.meta/train_post_competition.csv',
         'fname,label,manually_verified,freesound_id,license\n00044347.wav,Hi-hat,0,28739,Attribution\n'
         '001ca53d.wav,Saxophone,1,358827,Attribution\n')
    text(root / 'FSDKaggle2018.meta/test_post_competition_scoring_clips.csv',
         'fname,label,usage,freesound_id,license\n00326aa9.wav,Oboe,Private,355125,Attribution\n'
         '0038a046.wav,Bass_drum,Public,90621,Creative Commons 0\n')
    for name in ('audio_train/00044347', 'audio_train/001ca53d', 'audio_test/00326aa9', 'audio_test/0038a046'):
        clip(root / f'FSDKaggle2018.{name}.wav', sr=44100)
    _, rows = rows_of('fsdkaggle2018', root, tmp_path)
    assert rows == [('FSDKaggle2018.audio_test/00326aa9.wav', 'Oboe', 'test'),
                    ('FSDKaggle2018.audio_test/0038a046.wav', 'Bass_drum', 'test'),
                    ('FSDKaggle2018.audio_train/00044347.wav', 'Hi-hat', 'train'),
                    ('FSDKaggle2018.audio_train/001ca53d.wav', 'Saxophone', 'train')]
    (root / 'FSDKaggle2018.meta/test_post_competition_scoring_clips.csv').unlink()
    refused('fsdkaggle2018', root, tmp_path, r'Missing .*test_post_competition_scoring_clips.csv: expected FSDKaggle2018')


FMA_TRACKS = """\
,album,set,set,track,track
,title,split,subset,genre_top,title
track_id,,,,,
2,AWOL - A Way Of Life,training,small,Hip-Hop,Food
140,Constant Hitmaker,validation,small,Folk,Queen Of The Wires
666,Something,training,medium,Rock,"Title, with comma"
1482,Other,test,small,Experimental,x
"""


def test_fma_small(tmp_path):
    root = tmp_path / 'fma'
    text(root / 'fma_metadata/tracks.csv', FMA_TRACKS)
    for name in ('000/000002', '000/000140', '001/001482'):
        clip(root / f'fma_small/{name}.mp3', sr=44100)
    _, rows = rows_of('fma_small', root, tmp_path)
    assert rows == [('fma_small/000/000002.mp3', 'Hip-Hop', 'train'), ('fma_small/000/000140.mp3', 'Folk', 'valid'),
                    ('fma_small/001/001482.mp3', 'Experimental', 'test')]  # 666 is in medium only
    text(root / 'fma_metadata/tracks.csv', FMA_TRACKS.replace('genre_top', 'genres'))
    refused('fma_small', root, tmp_path, r"tracks.csv lacks the column\(s\) \[\('track', 'genre_top'\)\]")
    (root / 'fma_metadata/tracks.csv').unlink()
    refused('fma_small', root, tmp_path, r"Missing .*fma_metadata/tracks.csv: expected FMA's track metadata")
