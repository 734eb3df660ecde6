"""Where the datasets with a public archive are published: one `DatasetSource` per dataset, as data.

Each `RemoteFile` names its URLs (mirrors in order of preference), its size and checksum where a public source
gives them, how to unpack it, and where its content goes under the dataset root that the task's metadata builder
reads (`python -m evar.metadata <task> <root>`). `python -m evar.download` (evar/download.py) uses these records.

Checksums are the publishers' own where they publish one (Zenodo lists an md5 for every file of a record);
otherwise the value a maintained loader pins (torchaudio, soundata), named in `RemoteFile.provenance`. A Zenodo
file with no pinned value names its Zenodo API entry (`checksum_url`): the md5 Zenodo lists is read at download
time. A file whose publisher gives no checksum has `checksum=None` and says so: it is verified by its size (when
known) and by unpacking it. No value here was computed by evar's authors from a download.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Optional

ARCHIVE_KINDS = ('zip', 'tar', '7z', 'zip-part', 'split-zip', 'file')
CHECKSUM_ALGORITHMS = ('md5', 'sha1', 'sha256')
_HEX_WIDTH = {'md5': 32, 'sha1': 40, 'sha256': 64}


@dataclass(frozen=True)
class Checksum:
    """A file's digest as published: `algorithm` 'md5', 'sha1' or 'sha256', `hexdigest` lower-case hex."""
    algorithm: str
    hexdigest: str

    def __post_init__(self):
        if self.algorithm not in CHECKSUM_ALGORITHMS:
            raise ValueError(f'Checksum algorithm {self.algorithm!r} is not one of {CHECKSUM_ALGORITHMS}.')
        width = _HEX_WIDTH[self.algorithm]
        if len(self.hexdigest) != width or any(c not in '0123456789abcdef' for c in self.hexdigest):
            raise ValueError(f'{self.algorithm} digest {self.hexdigest!r} is not {width} lower-case hex digits.')


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    name: the file name on disk (under `<dest>/downloads/`). urls: mirrors, tried in order. size: bytes, or None
    when no public source states it. checksum: the published digest, or None when the publisher gives none.
    provenance: where `checksum`/`size` were found, or why there is none. archive: 'zip', 'tar' (any compression
    tarfile reads), '7z' (needs py7zr), 'file' (copied as is), 'zip-part' (a .z01... piece of a split zip: not
    unpacked alone) or 'split-zip' (the .zip that ends a split zip: its pieces `<stem>.z01...` are joined first).
    member_root: the folder inside the archive whose content is wanted (e.g. 'ESC-50-<commit>'); when the archive
    has no such top folder, a folder of the same last name up to two levels down, else its whole content is
    taken. into: the folder under the dataset root that receives it ('' = the root itself). checksum_url: for a
    file whose checksum is not pinned here, a Zenodo API file entry (JSON with `checksum` '<algorithm>:<hex>' and
    `size`) read at download time: the publisher's own checksum, fetched rather than copied.
    """
    name: str
    urls: tuple[str, ...]
    size: Optional[int]
    checksum: Optional[Checksum]
    provenance: str
    archive: str
    member_root: str = ''
    into: str = ''
    checksum_url: Optional[str] = None

    def __post_init__(self):
        if self.archive not in ARCHIVE_KINDS:
            raise ValueError(f'{self.name}: archive kind {self.archive!r} is not one of {ARCHIVE_KINDS}.')
        if not self.urls:
            raise ValueError(f'{self.name}: no URL.')


@dataclass(frozen=True)
class DatasetSource:
    """A dataset's public archive(s): `tasks` it serves, `folder` (the dataset root under the download folder),
    `files` in download order, `licence`, `note` for the user, and `metadata_root`: the folder under the dataset
    root that the tasks' metadata builders read ('' = the root itself)."""
    name: str
    tasks: tuple[str, ...]
    folder: str
    files: tuple[RemoteFile, ...]
    licence: str
    note: str = ''
    metadata_root: str = ''


def _zenodo(record: int, name: str) -> str:
    return f'https://zenodo.org/records/{record}/files/{name}?download=1'


# ESC-50 has no release archive: GitHub makes the zip of a commit on request, and its bytes (compression,
# timestamps) are not guaranteed stable, so no checksum can be pinned. The commit is pinned so the content is fixed;
# the download is verified by the zip's own CRCs and by the metadata builder reading meta/esc50.csv.
ESC50_COMMIT = '33c8ce9eb2cf0b1c2f8bcf322eb349b6be34dbb6'

_FSD50K_MD5 = {  # Zenodo record 4060432's listed md5s (also pinned by soundata/datasets/fsd50k.py)
    'FSD50K.ground_truth.zip': 'ca27382c195e37d2269c4c866dd73485',
    'FSD50K.dev_audio.z01': 'faa7cf4cc076fc34a44a479a5ed862a3',
    'FSD50K.dev_audio.z02': '8f9b66153e68571164fb1315d00bc7bc',
    'FSD50K.dev_audio.z03': '1196ef47d267a993d30fa98af54b7159',
    'FSD50K.dev_audio.z04': 'd088ac4e11ba53daf9f7574c11cccac9',
    'FSD50K.dev_audio.z05': '81356521aa159accd3c35de22da28c7f',
    'FSD50K.dev_audio.zip': 'c480d119b8f7a7e32fdb58f3ea4d6c5a',
    'FSD50K.eval_audio.z01': '3090670eaeecc013ca1ff84fe4442aeb',
    'FSD50K.eval_audio.zip': '6fa47636c3a3ad5c7dfeba99f2637982',
}
_FSD50K_PROVENANCE = 'md5 listed on Zenodo record 4060432 (as pinned by soundata/datasets/fsd50k.py); size not pinned'


def _fsd50k_file(name: str) -> RemoteFile:
    kind = 'zip-part' if '.z0' in name else 'split-zip' if 'audio' in name else 'zip'
    return RemoteFile(name, (_zenodo(4060432, name),), None, Checksum('md5', _FSD50K_MD5[name]), _FSD50K_PROVENANCE,
                      kind)


_CLOTHO_MD5 = {  # Zenodo record 4783391 (Clotho v2.1) listed md5s (as pinned by soundata/datasets/dcase23_task6a.py)
    'clotho_audio_development.7z': 'c8b05bc7acdb13895bb3c6a29608667e',
    'clotho_audio_validation.7z': '7dba730be08bada48bd15dc4e668df59',
    'clotho_audio_evaluation.7z': '4569624ccadf96223f19cb59fe4f849f',
    'clotho_captions_development.csv': 'd4090b39ce9f2491908eebf4d5b09bae',
    'clotho_captions_validation.csv': '5879e023032b22a2c930aaa0528bead4',
    'clotho_captions_evaluation.csv': '1b16b9e57cf7bdb7f13a13802aeb57e2',
}


def _clotho_file(name: str) -> RemoteFile:
    subset = name.rsplit('_', 1)[1].split('.')[0]
    audio = name.endswith('.7z')
    return RemoteFile(name, (_zenodo(4783391, name),), None, Checksum('md5', _CLOTHO_MD5[name]),
                      'md5 listed on Zenodo record 4783391 (as pinned by soundata/datasets/dcase23_task6a.py)',
                      '7z' if audio else 'file', member_root=subset if audio else '', into=subset if audio else '')


def _nsynth_file(split: str) -> RemoteFile:
    name = f'nsynth-{split}.jsonwav.tar.gz'
    return RemoteFile(name, (f'http://download.magenta.tensorflow.org/datasets/nsynth/{name}',), None, None,
                      'Magenta publishes no checksum or size for the NSynth archives: verified by unpacking only',
                      'tar')


# HEAR 2021.3's preprocessed tasks at 48 kHz (Zenodo record 6332517, concept doi:10.5281/zenodo.5885750): one
# tar.gz per task holding tasks/<task>-<version>-<mode>/{task_metadata.json,...,48000/}. Archive names as listed
# for that record in public download scripts; no checksum is pinned: the md5 comes from Zenodo's API at download.
HEAR_RECORD = 6332517


def _hear(task: str, folder: str) -> DatasetSource:
    name = f'hear2021-{folder}-48000.tar.gz'
    api = f'https://zenodo.org/api/records/{HEAR_RECORD}/files/{name}'
    return DatasetSource(
        f'HEAR 2021 {folder}', (task,), 'hear2021',
        (RemoteFile(name, (f'{api}/content',), None, None,
                    f'no checksum pinned here: the md5 Zenodo lists for record {HEAR_RECORD} is read from its API at '
                    'download time', 'tar', member_root=f'tasks/{folder}', into=folder, checksum_url=api),),
        'the original datasets\' licences (see hearbenchmark.com)', metadata_root=f'{folder}/48000')


_SOURCES = (
    DatasetSource(
        'ESC-50', ('esc50',), 'ESC-50',
        (RemoteFile('ESC-50-' + ESC50_COMMIT + '.zip',
                    (f'https://github.com/karolpiczak/ESC-50/archive/{ESC50_COMMIT}.zip',), None, None,
                    'GitHub archive of a pinned commit: GitHub builds it on request and does not guarantee stable '
                    'bytes, so no checksum or size is pinned (the zip CRCs are checked on unpacking)',
                    'zip', member_root=f'ESC-50-{ESC50_COMMIT}'),),
        'CC BY-NC 3.0 (ESC-10 subset CC BY)'),
    DatasetSource(
        'Speech Commands v0.01', ('spcv1',), 'speech_commands_v0.01',
        (RemoteFile('speech_commands_v0.01.tar.gz',
                    ('http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz',), None,
                    Checksum('sha256', '743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d'),
                    'sha256 pinned by torchaudio.datasets.SPEECHCOMMANDS', 'tar'),),
        'CC BY 4.0'),
    DatasetSource(
        'Speech Commands v0.02', ('spcv2',), 'speech_commands_v0.02',
        (RemoteFile('speech_commands_v0.02.tar.gz',
                    ('http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz',), 2_428_923_189,
                    Checksum('sha256', 'af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58'),
                    'sha256 pinned by torchaudio.datasets.SPEECHCOMMANDS; sha256 and size in TensorFlow Datasets\' '
                    'speech_commands/checksums.tsv', 'tar'),),
        'CC BY 4.0'),
    DatasetSource(
        'GTZAN', ('gtzan',), 'gtzan',
        (RemoteFile('genres.tar.gz',
                    ('http://opihi.cs.uvic.ca/sound/genres.tar.gz',
                     'https://web.archive.org/web/20220328223413/http://opihi.cs.uvic.ca/sound/genres.tar.gz'),
                    None, Checksum('sha256', '24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6'),
                    'sha256 pinned by torchaudio.datasets.GTZAN (older torchaudio: md5 '
                    '5b3d6dddb579ab49814ab86dba69e7c7); the original host is often down: the second URL is the '
                    'Internet Archive\'s copy', 'tar', member_root='genres'),),
        'unknown (research use; the authors hold no copyright permission)',
        note='GTZAN needs the fault-filtered split lists as --split_file (see `python -m evar.metadata --help`).'),
    DatasetSource(
        'UrbanSound8K', ('us8k',), 'UrbanSound8K',
        (RemoteFile('UrbanSound8K.tar.gz', (_zenodo(1203745, 'UrbanSound8K.tar.gz'),), None,
                    Checksum('md5', '9aa69802bbf37fb986f71ec1483a196e'),
                    'md5 listed on Zenodo record 1203745 (as pinned by soundata/datasets/urbansound8k.py)', 'tar',
                    member_root='UrbanSound8K'),),
        'CC BY-NC 3.0'),
    DatasetSource(
        'FSD50K', ('fsd50k',), 'FSD50K',
        tuple(_fsd50k_file(n) for n in _FSD50K_MD5),
        'CC BY 4.0 (clips: CC0, CC BY, CC BY-NC, CC Sampling+)',
        note='The audio comes as split zips (.z01... + .zip), joined with the `zip` tool (`zip -s 0`) before '
             'unpacking: about 2 x 30 GB of free space is needed while unpacking.'),
    DatasetSource(
        'NSynth', ('nsynth', 'nspitch', 'nsvelocity'), 'nsynth',
        tuple(_nsynth_file(s) for s in ('train', 'valid', 'test')),
        'CC BY 4.0'),
    DatasetSource(
        'FSDKaggle2018', ('fsdkaggle2018',), 'FSDKaggle2018',
        tuple(RemoteFile(f'FSDKaggle2018.{part}.zip', (_zenodo(2552860, f'FSDKaggle2018.{part}.zip'),), None, None,
                         'Zenodo record 2552860 lists an md5 per file, but no public copy of it was found to pin: '
                         'no checksum here, verified by the zip CRCs on unpacking', 'zip')
              for part in ('meta', 'audio_train', 'audio_test')),
        'CC BY 4.0 (clips: CC0, CC BY, CC Sampling+)'),
    DatasetSource(
        'FMA small', ('fma_small',), 'fma',
        tuple(RemoteFile(f'{name}.zip', (f'https://os.unil.cloud.switch.ch/fma/{name}.zip',), None,
                         Checksum('sha1', sha1), 'sha1 published by the authors in github.com/mdeff/fma (README)', 'zip')
              for name, sha1 in (('fma_metadata', 'f0df49ffe5f2a6008d7dc83c6915b31835dfe733'),
                                 ('fma_small', 'ade154f733639d52e35e32f5593efe5be76c6d70'))),
        'audio: the artists\' Creative Commons licences; metadata CC BY 4.0'),
    DatasetSource(
        'Clotho v2.1', ('clotho',), 'clotho',
        tuple(_clotho_file(n) for n in _CLOTHO_MD5),
        'audio: Freesound licences (CC0, CC BY, CC BY-NC); captions: Tampere University licence',
        note='The audio comes as 7z archives: unpacking them needs py7zr (pip install py7zr).'),
    _hear('beijing_opera', 'beijing_opera-v1.0-hear2021-full'),
    _hear('mridangam_stroke', 'mridangam_stroke-v1.5-full'),
    _hear('mridangam_tonic', 'mridangam_tonic-v1.5-full'),
    _hear('nsynth_pitch_50h', 'nsynth_pitch-v2.2.3-50h'),
)

# name -> DatasetSource, read-only.
SOURCES = MappingProxyType({s.name: s for s in _SOURCES})

# Built-in tasks whose data cannot be fetched as a public archive, and what to do instead.
NOT_DOWNLOADABLE = MappingProxyType({
    'cremad': 'CREMA-D\'s audio is stored with Git LFS in github.com/CheyneyComputerScience/CREMA-D (no archive): '
              'clone it with `git lfs` and run `python -m evar.metadata cremad <clone>/AudioWAV --split_file ...`.',
    'cremad_gender': 'as cremad: clone github.com/CheyneyComputerScience/CREMA-D with `git lfs`.',
    'vc1': 'VoxCeleb1 is distributed after registration only (robots.ox.ac.uk/~vgg/data/voxceleb).',
    'as20k': 'AudioSet is published as YouTube ids: the audio must be fetched from YouTube.',
    'as': 'AudioSet is published as YouTube ids: the audio must be fetched from YouTube.',
    'audiocaps': 'AudioCaps is published as YouTube ids: the audio must be fetched from YouTube.',
})


def source_for_task(task: str) -> Optional[DatasetSource]:
    """The `DatasetSource` serving `task`, or None."""
    return next((s for s in _SOURCES if task in s.tasks), None)


def downloadable_tasks() -> list[str]:
    """Every task name some source serves, in registry order."""
    return [t for s in _SOURCES for t in s.tasks]
