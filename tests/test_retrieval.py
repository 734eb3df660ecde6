"""Audio-text retrieval: the metrics against rankings worked out by hand (ties, clips with 1, 3 and 7 captions),
the captions CSV reader, the Clotho / AudioCaps / ML-AudioCaps metadata builders on small copies of the publishers'
layouts, and retr_a2t_t2a.py end to end with a tiny random CLAP on real ESC-50 clips."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from helpers import ROOT, SHARED, needs_shared, run_script

from evar.errors import EvarError
from evar.metrics import audio_text_retrieval, retrieval_scores
from evar.modes.retrieval import read_captions

# Three clips with 1, 3 and 7 captions: caption j belongs to clip OWNER[j].
OWNER = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2])
SIM = np.array([  # clip x caption similarities; unlisted ones are 0
    [.5, .9, .1, 0, .5, 0, 0, 0, 0, 0, 0],
    [.9, .8, .1, .7, 0, .7, 0, 0, 0, 0, 0],
    [1., .95, .95, .95, .9, .8, .7, .6, .5, .4, .3],
])
RELEVANT = OWNER[None, :] == np.arange(3)[:, None]


def test_audio_to_text_matches_hand_ranking_with_ties():
    # Clip 0: c1 (.9), then c4 and its own c0 tie at .5: the irrelevant c4 goes first, so c0 is at 3.
    # Clip 1: c0 .9, c1 .8 (own, 2), c5 and own c3 tie at .7 -> c5 3, c3 4, then own c2 (.1) at 5.
    # Clip 2: c0, c1-c3 above, its own seven at 5..11, six of them within the top 10.
    a2t = retrieval_scores(SIM, RELEVANT)
    assert a2t.ranks.tolist() == [3, 2, 5]
    ap = [1 / 3, (1 / 2 + 2 / 4 + 3 / 5) / 3, (1 / 5 + 2 / 6 + 3 / 7 + 4 / 8 + 5 / 9 + 6 / 10) / 7]
    assert a2t.map10 == pytest.approx(100 * np.mean(ap), abs=1e-12)
    assert a2t.recall == {1: 0.0, 5: 100.0, 10: 100.0, 50: 100.0}
    assert (a2t.median_rank, a2t.mean_rank) == (3.0, pytest.approx(10 / 3))


def test_text_to_audio_matches_hand_ranking_with_ties():
    # Caption columns: c0 (.5, .9, 1.) own clip 0 -> 3; c1 (.9, .8, .95) own 1 -> 3; c2 (.1, .1, .95) own 1 ties
    # with clip 0 -> 3; c3 (0, .7, .95) -> 2; c4-c10 are clip 2's and it scores highest -> 1.
    t2a = retrieval_scores(SIM.T, RELEVANT.T)
    assert t2a.ranks.tolist() == [3, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1]
    assert t2a.recall[1] == pytest.approx(100 * 7 / 11, abs=1e-12) and t2a.recall[5] == 100.0
    assert t2a.map10 == pytest.approx(100 * (3 / 3 + 1 / 2 + 7) / 11, abs=1e-12)
    assert (t2a.median_rank, t2a.mean_rank) == (1.0, pytest.approx(18 / 11))


def test_constant_similarities_rank_worst_and_beyond_ten_counts_nothing():
    sim = np.zeros((2, 30))
    relevant = np.zeros((2, 30), dtype=bool)
    relevant[0, :12] = True  # 12 captions: AP@10 divides by min(12, 10)
    relevant[1, 12:] = True
    r = retrieval_scores(sim, relevant)
    assert r.ranks.tolist() == [19, 13] and r.map10 == 0.0 and r.recall[10] == 0.0
    sim[0, :12] = 1.0  # all twelve on top: the first ten fill the cut-off, AP@10 = 1
    assert retrieval_scores(sim, relevant).map10 == pytest.approx(50.0)


def test_audio_text_retrieval_uses_cosine_and_both_directions():
    rng = np.random.default_rng(0)
    audio = rng.normal(size=(3, 4))
    text = audio[OWNER] * rng.uniform(0.5, 3, size=(11, 1))  # own clip's direction, other lengths
    a2t, t2a = audio_text_retrieval(audio, text, OWNER)
    assert a2t.ranks.tolist() == [1, 1, 1] and t2a.ranks.tolist() == [1] * 11
    with pytest.raises(EvarError, match='no relevant item'):
        retrieval_scores(np.zeros((1, 2)), np.zeros((1, 2), dtype=bool))


def write_csv(path, header, rows):
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_read_captions_keeps_any_number_per_clip_and_one_split(tmp_path):
    path = write_csv(tmp_path / 'c.csv', ['file_name', 'caption', 'split'],
                     [('a.wav', 'one', 'test'), ('b.wav', 'two, with a comma', 'test'), ('a.wav', 'three', 'test'),
                      ('c.wav', 'train only', 'train'), ('b.wav', 'four', 'eval')])
    caps = read_captions(path)
    assert caps.file_names == ('a.wav', 'b.wav') and caps.owner.tolist() == [0, 1, 0, 1]
    assert caps.captions == ('one', 'two, with a comma', 'three', 'four')
    with pytest.raises(EvarError, match='no row in the valid split'):
        read_captions(path, 'valid')
    bad = write_csv(tmp_path / 'bad.csv', ['file_name', 'text', 'split'], [('a.wav', 'x', 'test')])
    with pytest.raises(EvarError, match='expected file_name, caption, split'):
        read_captions(bad)


def _wav(path, seconds=0.5, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate)


def _build(task, root, work):
    from evar.metadata import main

    assert main([task, str(root), '--work_root', str(work)]) == 0
    with open(work / 'metadata' / f'{task}.csv', newline='') as f:
        return list(csv.DictReader(f))


def test_clotho_builder_reads_the_three_caption_csvs(tmp_path):
    root = tmp_path / 'clotho'
    for subset, names in (('development', ['d 1.wav', 'd2.wav']), ('validation', ['v1.wav']),
                          ('evaluation', ['e1.wav', 'gone.wav'])):
        rows = []
        for name in names:
            if name != 'gone.wav':
                _wav(root / subset / name)
            rows.append((name, *(f'{name} caption {i}' for i in range(1, 6))))
        write_csv(root / f'clotho_captions_{subset}.csv', ['file_name', *(f'caption_{i}' for i in range(1, 6))],
                  rows)
    rows = _build('clotho', root, tmp_path / 'work')
    assert list(rows[0]) == ['file_name', 'caption', 'split']
    assert len(rows) == 4 * 5  # gone.wav is not on disk: left out with a warning
    assert {(r['file_name'], r['split']) for r in rows} == {
        ('development/d 1.wav', 'train'), ('development/d2.wav', 'train'), ('validation/v1.wav', 'valid'),
        ('evaluation/e1.wav', 'test')}
    caps = read_captions(tmp_path / 'work' / 'metadata' / 'clotho.csv')
    assert caps.file_names == ('evaluation/e1.wav',) and len(caps.captions) == 5


def test_audiocaps_and_japanese_builders_match_clips_by_youtube_id(tmp_path):
    root = tmp_path / 'audiocaps'
    ids = {'train': ['aaaaaaaaaaa'], 'val': ['bbbbbbbbbbb'], 'test': ['ccccccccccc', 'dd-dddddddd']}
    _wav(root / 'train' / 'Yaaaaaaaaaaa.wav')  # WavCaps' / AudioSet's naming
    _wav(root / 'val' / 'bbbbbbbbbbb_30.wav')  # <id>_<start>
    _wav(root / 'test' / 'Yccccccccccc.wav')
    _wav(root / 'test' / 'dd-dddddddd.wav')
    for lang in ('en', 'ja'):  # ML-AudioCaps' folders; 'zzzzzzzzzzz' was never downloaded
        (root / lang).mkdir()
        for split, clips in ids.items():
            rows = [(i, y, 0, f'{lang} {y} {k}') for i, y in enumerate(clips) for k in range(1 if split == 'train' else 3)]
            write_csv(root / lang / f'{split}.csv', ['audiocap_id', 'youtube_id', 'start_time', 'caption'],
                      rows + [(9, 'zzzzzzzzzzz', 0, 'absent')])
    rows = _build('audiocaps', root, tmp_path / 'work')
    assert len(rows) == 1 + 3 + 6 and all(r['caption'].startswith('en ') for r in rows)
    assert {r['file_name'] for r in rows if r['split'] == 'test'} == {'test/Yccccccccccc.wav', 'test/dd-dddddddd.wav'}
    assert {r['split'] for r in rows if r['file_name'] == 'val/bbbbbbbbbbb_30.wav'} == {'valid'}
    ja = _build('ja_audiocaps', root, tmp_path / 'work')
    assert len(ja) == 10 and all(r['caption'].startswith('ja ') for r in ja)


def test_classification_task_is_refused(tmp_path):
    proc = run_script('retr_a2t_t2a.py', ROOT / 'config' / 'melspec.yaml', 'esc50', '--work_root', tmp_path / 'w',
                      cwd=tmp_path)
    assert proc.returncode == 1 and 'is a classification task' in proc.stderr, proc.stderr


def reference_ranks(sim, owner):
    """Independent of evar.metrics: a2t rank = 1 + irrelevant captions scoring >= the best own caption; t2a rank =
    1 + other clips scoring >= the own clip; a2t AP@10 over the ordering by (score down, irrelevant first)."""
    a2t, t2a, ap = [], [], []
    for i, row in enumerate(sim):
        own = owner == i
        a2t.append(1 + int((row[~own] >= row[own].max()).sum()))
        order = sorted(range(len(row)), key=lambda j: (-row[j], bool(own[j])))
        hits = [p + 1 for p, j in enumerate(order) if own[j] and p < 10]
        ap.append(sum((k + 1) / p for k, p in enumerate(hits)) / min(own.sum(), 10))
    for j, col in enumerate(sim.T):
        t2a.append(1 + int((np.delete(col, owner[j]) >= col[owner[j]]).sum()))
    return np.array(a2t), np.array(t2a), 100 * np.mean(ap)


@needs_shared
@pytest.mark.slow
def test_script_on_real_clips_with_tiny_clap_matches_numpy_reference(tmp_path):
    from helpers.tiny_models import tiny_hf

    values = tiny_hf(tmp_path / 'models', 'clap')
    config = tmp_path / 'clap.yaml'
    config.write_text('audio_repr: hf\n' + ''.join(f'{k}: {v}\n' for k, v in values.items()))
    esc = SHARED / 'data' / 'ESC-50'
    with open(esc / 'meta' / 'esc50.csv', newline='') as f:
        clips = list(csv.DictReader(f))[:12]
    rows = [(f'audio/{c["filename"]}', f'{c["category"].replace("_", " ")} {k}', 'test')
            for i, c in enumerate(clips) for k in range((1, 3, 7)[i % 3])]
    captions = write_csv(tmp_path / 'captions.csv', ['file_name', 'caption', 'split'],
                         rows + [(f'audio/{clips[0]["filename"]}', 'a training caption', 'train')])
    work = tmp_path / 'work'
    proc = run_script('retr_a2t_t2a.py', config, captions, '--data', esc, '--work_root', work, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'Audio to caption (a2t)' in proc.stderr and 'Caption to audio (t2a)' in proc.stderr

    cached = {json.loads(p.read_text()).get('kind', 'clip'): np.load(p.with_suffix('.npy'))
              for p in (work / 'cache').glob('embs-*.json')}
    audio, text = cached['clip'].astype(np.float64), cached['text'].astype(np.float64)
    assert audio.shape[0] == 12 and text.shape[0] == len(rows) == 44
    owner = np.repeat(np.arange(12), [(1, 3, 7)[i % 3] for i in range(12)])
    sim = (audio / np.linalg.norm(audio, axis=1, keepdims=True)) @ (text / np.linalg.norm(text, axis=1,
                                                                                          keepdims=True)).T
    a2t, t2a, a2t_map = reference_ranks(sim, owner)
    with open(tmp_path / 'results' / 'retrieval_scores.csv', newline='') as f:
        (row,) = list(csv.DictReader(f))
    header = list(row)
    assert header[:11] == ['model', 'task', 'a2tR1', 'a2tR5', 'a2tR10', 'a2tmAP10', 't2aR1', 't2aR5', 't2aR10',
                           't2amAP10', 'weight']
    # The CSV holds 5 decimals of float64 figures: 1e-5 absolute.
    for k in (1, 5, 10):
        assert float(row[f'a2tR{k}']) == pytest.approx(100 * np.mean(a2t <= k), abs=1e-5)
        assert float(row[f't2aR{k}']) == pytest.approx(100 * np.mean(t2a <= k), abs=1e-5)
    assert float(row['a2tmAP10']) == pytest.approx(a2t_map, abs=1e-5)
    assert float(row['t2amAP10']) == pytest.approx(100 * np.mean(np.where(t2a <= 10, 1 / t2a, 0)), abs=1e-5)
    assert float(row['a2tMeanR']) == pytest.approx(a2t.mean(), abs=1e-5)
    assert row['mode'] == 'retrieval' and row['n_clips'] == '12' and row['n_captions'] == '44'
    # A second run reads both caches (audio and text) and appends the same figures.
    proc = run_script('retr_a2t_t2a.py', config, captions, '--data', esc, '--work_root', work, cwd=tmp_path)
    assert proc.returncode == 0 and 'using cached text embeddings' in proc.stderr, proc.stderr
    with open(tmp_path / 'results' / 'retrieval_scores.csv', newline='') as f:
        again = list(csv.DictReader(f))
    assert len(again) == 2 and again[1]['a2tmAP10'] == row['a2tmAP10']
