"""The applications' builders on small copies of their publishers' layouts, made here from real clips in
../shared (the sounds are not heart or lung sounds: the layouts, the patient-level splits and the rules are what is
tested), and each application end to end with the log-mel baseline."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from evar.errors import EvarError
from helpers import ROOT, SHARED, needs_shared

ESC = SHARED / 'data' / 'ESC-50'
MELSPEC = ROOT / 'config' / 'melspec.yaml'


def esc_clips(category: str) -> list:
    """The ESC-50 subset's clips of `category`, float32 [80000] at 16 kHz each."""
    from evar.audio import load_audio

    with open(ESC / 'meta' / 'esc50.csv') as f:
        names = sorted(r['filename'] for r in csv.DictReader(f) if r['category'] == category)
    return [load_audio(ESC / 'audio' / n, None)[0] for n in names]


def write_wav(path: Path, wav: np.ndarray, rate: int = 16000) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, rate, subtype='PCM_16')


def write_table(path: Path, rows: list) -> None:
    """Writes dict `rows` as a CSV with the first row's keys as its header (a publisher's metadata table)."""
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list:
    with open(path) as f:
        return list(csv.DictReader(f))


# --- CirCor v1.0.3 ----------------------------------------------------------------------------------------------

CIRCOR_SOUNDS = {'Present': 'dog', 'Unknown': 'rain', 'Absent': 'clock_tick'}


def make_circor(root: Path, per_class: int = 4) -> dict:
    """A CirCor v1.0.3 layout: training_data.csv and training_data/<pid>_<loc>.wav (+ .tsv, .hea, <pid>.txt);
    each patient has two recordings of 7.5 s (one full 5-s segment each). Returns {patient: label}."""
    data = root / 'training_data'
    data.mkdir(parents=True)
    rows, labels = [], {}
    for c, (label, category) in enumerate(CIRCOR_SOUNDS.items()):
        clips = esc_clips(category)
        for i in range(per_class):
            pid = str(50000 + 10 * c + i)
            labels[pid] = label
            for j, loc in enumerate(('AV', 'MV')):
                wav = np.concatenate([clips[(2 * i + j) % len(clips)], clips[(2 * i + j + 1) % len(clips)][:40000]])
                write_wav(data / f'{pid}_{loc}.wav', wav)
                (data / f'{pid}_{loc}.tsv').write_text('0.0\t0.5\t1\n')
                (data / f'{pid}_{loc}.hea').write_text(f'{pid}_{loc} 1 16000 120000\n')
            (data / f'{pid}.txt').write_text(f'{pid} 2 16000\n')
            rows.append({'Patient ID': pid, 'Recording locations:': 'AV+MV', 'Age': 'Child', 'Murmur': label,
                         'Outcome': 'Normal'})
    write_table(root / 'training_data.csv', rows)
    return labels


@needs_shared
def test_circor_build_layout_and_splits(tmp_path):
    from app import circor

    labels = make_circor(tmp_path / 'circor')
    tasks = circor.build(tmp_path / 'circor', tmp_path / 'out')
    assert [t.name for t in tasks] == ['circor1', 'circor2', 'circor3']
    assert 'data: audio' in tasks[0].yaml.read_text()  # relative: the application folder can move
    # 12 patients x 2 recordings of 7.5 s -> one 5-s segment each (the 2.5-s rest is dropped)
    audio = sorted(p.name for p in (tmp_path / 'out' / 'audio').iterdir())
    assert len(audio) == 24 and audio[0] == '50000_AV_000.flac'
    import soundfile as sf

    assert sf.info(str(tmp_path / 'out' / 'audio' / audio[0])).frames == 80000
    tests = []
    for task in tasks:
        rows, groups = read_csv(task.metadata), read_csv(task.groups)
        assert [r['file_name'] for r in rows] == [g['file_name'] for g in groups]
        by_split = {}
        for r, g in zip(rows, groups):
            assert r['label'] == labels[g['patient']]
            by_split.setdefault(r['split'], set()).add(g['patient'])
        # per class of 4 patients: 1 test (20 %), then 1 of the 3 others valid (25 %), 2 train
        assert {s: len(p) for s, p in by_split.items()} == {'train': 6, 'valid': 3, 'test': 3}
        assert not (by_split['train'] & by_split['valid']) and not (by_split['train'] & by_split['test'])
        assert not (by_split['valid'] & by_split['test'])
        assert sorted(labels[p] for p in by_split['test']) == ['Absent', 'Present', 'Unknown']
        tests.append(frozenset(by_split['test']))
    assert len(set(tests)) == 3  # three different seeded splits
    (tmp_path / 'out' / 'notes.csv').write_text('mine\n')
    circor.build(tmp_path / 'circor', tmp_path / 'out', n_splits=1)  # a rebuild leaves no stale split behind
    assert sorted(p.name for p in (tmp_path / 'out').iterdir() if p.is_file()) == [
        'circor1-groups.csv', 'circor1.csv', 'circor1.yaml', 'notes.csv']


def test_circor_missing_data_says_where_to_get_it(tmp_path):
    from app import circor

    with pytest.raises(EvarError, match='physionet.org.*licence'):
        circor.build(tmp_path / 'nothing', tmp_path / 'out')


@needs_shared
def test_circor_end_to_end(tmp_path):
    from app import circor
    from evar.results import read_rows

    make_circor(tmp_path / 'circor')
    circor.build(tmp_path / 'circor', tmp_path / 'out', n_splits=2)
    runs = circor.run(MELSPEC, tmp_path / 'out', seeds=(1, 2), epochs=15, work_root=tmp_path / 'work',
                      results_dir=tmp_path / 'results', device='cpu')
    assert [(r.task, r.seed) for r in runs] == [('circor1', 1), ('circor1', 2), ('circor2', 1), ('circor2', 2)]
    rows = read_rows(tmp_path / 'results' / 'circor-scores.csv')
    assert len(rows) == 4 * 2 + 2  # (task, seed) x (weighted_accuracy, uar) + a mean row per metric
    mean = {r.metric: r for r in rows if r.task == 'circor'}
    for metric in ('weighted_accuracy', 'uar'):
        values = [r.scores[metric] for r in runs]
        assert all(0 <= v <= 1 for v in values)
        assert mean[metric].runs == 4 and mean[metric].seed == '1;2'
        assert mean[metric].score == pytest.approx(np.mean(values), abs=1e-5)
        assert mean[metric].std == pytest.approx(np.std(values, ddof=1), abs=1e-5)
    assert {r.representation for r in rows} == {'melspec'} and len({r.run_id for r in rows}) == 1


# --- BMD-HS -----------------------------------------------------------------------------------------------------

def make_bmdhs(root: Path, per_class: int = 4) -> dict:
    """A BMD-HS layout: train.csv (patient_id, AS AR MR MS N, recording_1..8) and train/<recording>.wav, eight
    recordings per patient (2-s real clips; the published ones are 20 s). Returns {patient_id: label}."""
    sites = [f'{pos}_{site}' for pos in ('sup', 'sit') for site in ('Mit', 'Tri', 'Pul', 'Aor')]
    rows, labels = [], {}
    for c, (label, category) in enumerate((('Murmur', 'cow'), ('Normal', 'wind'))):
        clips = esc_clips(category)
        for i in range(per_class):
            n = 1 + c * per_class + i
            pid, prefix = f'patient_{n:03d}', ('MR' if label == 'Murmur' else 'N')
            stems = [f'{prefix}_{n:03d}_{s}' for s in sites]
            for j, stem in enumerate(stems):
                write_wav(root / 'train' / f'{stem}.wav', clips[(i + j) % len(clips)][:32000])  # 2 s
            labels[pid] = label
            rows.append({'patient_id': pid, 'AS': 0, 'AR': 0, 'MR': int(label == 'Murmur'), 'MS': 0,
                         'N': int(label == 'Normal'), **{f'recording_{k + 1}': s for k, s in enumerate(stems)}})
    write_table(root / 'train.csv', rows)
    return labels


@needs_shared
def test_bmdhs_build_published_split_and_missing_files(tmp_path):
    from app import bmdhs

    labels = make_bmdhs(tmp_path / 'bmd')
    split = tmp_path / 'split1.csv'  # the published form: patient_id ... split
    test = {'patient_001', 'patient_005'}
    split.write_text('patient_id,label,split\n' + ''.join(
        f'{p},{labels[p]},{"test" if p in test else "train"}\n' for p in sorted(labels)))
    (task,) = bmdhs.build(tmp_path / 'bmd', tmp_path / 'out', split_files=str(split))
    rows, groups = read_csv(task.metadata), read_csv(task.groups)
    assert len(rows) == 8 * 8 and rows[0]['file_name'] == 'train/MR_001_sup_Mit.wav'
    patients = {s: {g['patient'] for r, g in zip(rows, groups) if r['split'] == s} for s in ('train', 'valid', 'test')}
    assert patients['test'] == test
    # valid: 10 % of each class's 3 training patients -> one each, never a test patient
    assert len(patients['valid']) == 2 and sorted(labels[p] for p in patients['valid']) == ['Murmur', 'Normal']
    assert not patients['valid'] & (patients['train'] | patients['test'])
    assert all(r['label'] == labels[g['patient']] for r, g in zip(rows, groups))
    (tmp_path / 'bmd' / 'train' / 'N_005_sit_Aor.wav').unlink()
    with pytest.raises(EvarError, match='N_005_sit_Aor'):
        bmdhs.build(tmp_path / 'bmd', tmp_path / 'out2')
    with pytest.raises(EvarError, match='github.com/mHealthBuet'):
        bmdhs.build(tmp_path / 'nothing', tmp_path / 'out3')


@needs_shared
def test_bmdhs_end_to_end(tmp_path):
    from app import bmdhs
    from evar.results import read_rows

    make_bmdhs(tmp_path / 'bmd')
    tasks = bmdhs.build(tmp_path / 'bmd', tmp_path / 'out', n_splits=2)
    assert [t.name for t in tasks] == ['bmdhs1', 'bmdhs2']
    runs = bmdhs.run(MELSPEC, tmp_path / 'out', seeds='7', epochs=10, work_root=tmp_path / 'work',
                     results_dir=tmp_path / 'results', device='cpu')
    assert len(runs) == 2
    metrics = [f'{level}_{m}' for level in ('patient', 'sample')
               for m in ('accuracy', 'sensitivity', 'specificity', 'f1', 'icbhi_score')]
    assert list(runs[0].scores) == metrics
    for r in runs:  # one Murmur and one Normal test patient of eight recordings each
        s = r.scores
        assert s['patient_icbhi_score'] == pytest.approx((s['patient_sensitivity'] + s['patient_specificity']) / 2)
        assert s['patient_accuracy'] in (0, 0.5, 1) and 0 <= s['sample_accuracy'] <= 1
    rows = read_rows(tmp_path / 'results' / 'bmdhs-scores.csv')
    mean = {r.metric: r for r in rows if r.task == 'bmdhs'}
    assert set(mean) == set(metrics) and mean['sample_accuracy'].runs == 2
    assert mean['sample_accuracy'].score == pytest.approx(np.mean([r.scores['sample_accuracy'] for r in runs]),
                                                          abs=1e-5)


# --- ICBHI 2017 and SPRSound ------------------------------------------------------------------------------------

ICBHI_SOUNDS = {'normal': 'rain', 'crackle': 'keyboard_typing', 'wheeze': 'crying_baby', 'both': 'clock_alarm'}


def make_icbhi(root: Path, n_patients: int = 8, n_test: int = 2) -> dict:
    """An ICBHI 2017 layout: <pid>_1b1_Al_sc_Meditron.wav + .txt (one cycle of 2.5 s per class, in a rotating order)
    and ICBHI_challenge_train_test.txt (the last `n_test` patients test). Returns {recording: split}."""
    sounds = {label: esc_clips(cat) for label, cat in ICBHI_SOUNDS.items()}
    labels = list(ICBHI_SOUNDS)
    flags = {'normal': (0, 0), 'crackle': (1, 0), 'wheeze': (0, 1), 'both': (1, 1)}
    splits = {}
    root.mkdir(parents=True)
    for i in range(n_patients):
        stem = f'{101 + i}_1b1_Al_sc_Meditron'
        order = labels[i % 4:] + labels[:i % 4]
        wav = np.concatenate([sounds[lab][i % len(sounds[lab])][:40000] for lab in order])
        write_wav(root / f'{stem}.wav', wav)
        (root / f'{stem}.txt').write_text(''.join(f'{2.5 * k:.3f}\t{2.5 * (k + 1):.3f}\t{flags[lab][0]}\t'
                                                  f'{flags[lab][1]}\n' for k, lab in enumerate(order)))
        splits[stem] = 'test' if i >= n_patients - n_test else 'train'
    (root / 'ICBHI_challenge_train_test.txt').write_text(''.join(f'{s}\t{v}\n' for s, v in splits.items()))
    return splits


@needs_shared
def test_icbhi_build_cycles_official_split_and_valid(tmp_path):
    from app.icbhi_sprs import build_icbhi

    splits = make_icbhi(tmp_path / 'ICBHI_final_database')
    task = build_icbhi(tmp_path / 'ICBHI_final_database', tmp_path / 'out')
    rows, groups = read_csv(task.metadata), read_csv(task.groups)
    assert len(rows) == 8 * 4
    first = [r for r in rows if r['file_name'].startswith('icbhi/102_1b1_Al_sc_Meditron_')]
    assert [r['label'] for r in first] == ['crackle', 'wheeze', 'both', 'normal']  # the rotated order of patient 102
    import soundfile as sf

    assert sf.info(str(tmp_path / 'out' / first[0]['file_name'])).frames == 40000  # a 2.5-s cycle
    by_split = {}
    for r, g in zip(rows, groups):
        by_split.setdefault(r['split'], set()).add(g['patient'])
        assert r['split'] == 'valid' or r['split'] == splits[g['recording']]  # official test stays test
    assert by_split['test'] == {'107', '108'}
    assert len(by_split['valid']) == 1 and not by_split['valid'] & by_split['train']  # carved from training
    (tmp_path / 'ICBHI_final_database' / '103_1b1_Al_sc_Meditron.txt').write_text('0.0 1.0 2 0\n')
    with pytest.raises(EvarError, match='103_1b1_Al_sc_Meditron.txt, line 1'):
        build_icbhi(tmp_path / 'ICBHI_final_database', tmp_path / 'out2')
    with pytest.raises(EvarError, match='bhichallenge'):
        build_icbhi(tmp_path / 'nothing', tmp_path / 'out3')


def make_sprs(root: Path) -> None:
    """A SPRSound (BioCAS 2022) layout: train2022_wav/ + train2022_json/ (5 patients), test2022_wav/ +
    test2022_json/inter_test_json/ (2 new patients) and intra_test_json/ (2 training patients' new recordings);
    events of 1 s in ms, one 'Poor Quality' recording without events."""
    kinds = {'Normal': 'rain', 'Wheeze': 'crying_baby', 'Fine Crackle': 'keyboard_typing',
             'Wheeze & Crackle': 'clock_alarm'}
    sounds = {k: esc_clips(c) for k, c in kinds.items()}

    def recording(folder, json_folder, stem, types, record='CAS'):
        wav = np.concatenate([sounds[t][len(stem) % len(sounds[t])][:16000] for t in types] or [np.zeros(16000)])
        write_wav(root / folder / f'{stem}.wav', wav, 8000)  # SPRSound's recordings are 8 kHz
        events = [{'start': str(1000 * k), 'end': str(1000 * (k + 1)), 'type': t} for k, t in enumerate(types)]
        (root / json_folder).mkdir(parents=True, exist_ok=True)
        (root / json_folder / f'{stem}.json').write_text(json.dumps({'record_annotation': record,
                                                                     'event_annotation': events}))

    order = list(kinds)
    for i in range(5):
        recording('train2022_wav', 'train2022_json', f'{65000000 + i}_3.4_1_p1_{100 + i}', order[i % 4:] + order[:i % 4])
    recording('train2022_wav', 'train2022_json', '65000009_2.0_0_p2_199', [], record='Poor Quality')
    for i in range(2):
        recording('test2022_wav', 'test2022_json/inter_test_json', f'{41000000 + i}_5.0_0_p3_{300 + i}', order)
        recording('test2022_wav', 'test2022_json/intra_test_json', f'{65000000 + i}_3.4_1_p4_{400 + i}', order[::-1])


@needs_shared
def test_sprs_build_intra_inter(tmp_path):
    from app.icbhi_sprs import build_sprs

    make_sprs(tmp_path / 'BioCAS2022')
    inter, intra = build_sprs(tmp_path / 'BioCAS2022', tmp_path / 'out')
    assert (inter.name, intra.name) == ('sprs_inter', 'sprs_intra')

    def patients(task):
        out = {}
        for r, g in zip(read_csv(task.metadata), read_csv(task.groups)):
            out.setdefault(r['split'], set()).add(g['patient'])
        return out, {r['label'] for r in read_csv(task.metadata)}

    (p_inter, labels), (p_intra, _) = patients(inter), patients(intra)
    assert labels == {'Normal', 'Wheeze', 'Fine Crackle', 'Wheeze+Crackle'}  # '&' spelling normalised
    assert p_inter['test'] == {'41000000', '41000001'} and not p_inter['test'] & p_inter['train']
    assert p_intra['test'] == {'65000000', '65000001'} and p_intra['test'] <= p_inter['train'] | p_inter['valid']
    assert p_inter['train'] == p_intra['train'] and len(p_inter['valid']) == 1  # one shared, carved valid split
    assert not p_inter['valid'] & p_inter['train']
    assert len(read_csv(inter.metadata)) == 5 * 4 + 2 * 4  # the poor-quality recording has no event


@needs_shared
def test_icbhi_sprs_end_to_end(tmp_path):
    from app.icbhi_sprs import build_icbhi, build_sprs, run
    from evar.results import read_rows

    make_icbhi(tmp_path / 'icbhi')
    make_sprs(tmp_path / 'sprs')
    build_icbhi(tmp_path / 'icbhi', tmp_path / 'out')
    build_sprs(tmp_path / 'sprs', tmp_path / 'out')
    common = dict(epochs=4, frame_pool=10, lr=1e-3, work_root=tmp_path / 'work', results_dir=tmp_path / 'results',
                  device='cpu')
    icbhi = run(MELSPEC, tmp_path / 'out', dataset='icbhi', seeds='1,2', **common)
    sprs = run(MELSPEC, tmp_path / 'out', dataset='sprs', seeds=3, head='mlp', **common)
    assert [r.task for r in icbhi] == ['icbhi', 'icbhi'] and [r.task for r in sprs] == ['sprs_inter', 'sprs_intra']
    for r in icbhi + sprs:
        s = r.scores
        assert s['score'] == pytest.approx((s['sensitivity'] + s['specificity']) / 2)
        assert 0 <= s['accuracy'] <= 1
    rows = read_rows(tmp_path / 'results' / 'icbhi_sprs-scores.csv')
    means = {(r.task, r.metric): r for r in rows if r.runs > 1}
    assert means['icbhi', 'score'].score == pytest.approx(np.mean([r.scores['score'] for r in icbhi]), abs=1e-5)
    assert {r.head for r in rows} == {'transformer2', 'mlp128'}
    # sprs_inter and sprs_intra are different test sets: each keeps its own row, never one mean of both
    assert {r.task for r in rows if r.head == 'mlp128'} == {'sprs_inter', 'sprs_intra'}
    assert all(r.runs == 1 for r in rows if r.head == 'mlp128')  # one seed each: no mean rows
    assert len(rows) == 2 * 4 + 4 + 2 * 4


def test_build_on_the_command_line_says_what_it_wrote(tmp_path):
    import subprocess
    import sys

    make_circor(tmp_path / 'circor')
    proc = subprocess.run([sys.executable, '-m', 'app.circor', 'build', 'circor', 'out', '--n_splits', '2'],
                          cwd=tmp_path, capture_output=True, text=True, env={'PYTHONPATH': str(ROOT), 'PATH': '/usr/bin:/bin'},
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    wrote = [line.split('wrote task ')[1] for line in proc.stderr.splitlines() if 'wrote task ' in line]
    assert [w.split(':')[0] for w in wrote] == ['circor1', 'circor2'], proc.stderr
    assert all('(24 clips; metadata' in w for w in wrote), proc.stderr  # 12 patients x 2 recordings, one segment each


@pytest.mark.parametrize('module, args, expected', [
    ('app.circor', ['build', 'missing', 'out'], 'physionet.org/content/circor-heart-sound.*licence'),
    ('app.bmdhs', ['build', 'missing', 'out', '--split_files', 'a.csv'], 'github.com/mHealthBuet'),
    ('app.icbhi_sprs', ['build_sprs', '.', 'out'], 'SPRSound JSON folders for train/inter/intra'),
    ('app.icbhi_sprs', ['build_icbhi', '.', 'out', '--valid_fractio', '0.2'], 'unknown flag --valid_fractio'),
])
def test_command_line_errors(tmp_path, module, args, expected):
    import re
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, '-m', module, *args], cwd=tmp_path, capture_output=True, text=True,
                          env={'PYTHONPATH': str(ROOT), 'PATH': '/usr/bin:/bin'}, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith('Error: ') and re.search(expected, proc.stderr), proc.stderr
    assert 'Traceback' not in proc.stderr


def test_run_errors_before_any_work(tmp_path):
    from app import bmdhs, circor
    from app.icbhi_sprs import run

    with pytest.raises(EvarError, match='no built bmdhs'):
        bmdhs.run(MELSPEC, tmp_path, device='cpu')
    with pytest.raises(EvarError, match='--dataset must be one of'):
        run(MELSPEC, tmp_path, dataset='covid', device='cpu')
    with pytest.raises(EvarError, match='--rule must be one of'):
        circor.run(MELSPEC, tmp_path, rule='vote', device='cpu')
    with pytest.raises(EvarError, match='--hidden'):
        circor.run(MELSPEC, tmp_path, hidden='wide', device='cpu')
