"""Sound event detection: sed_eval's metrics on hand-made event lists (values worked out below), decoding (median
filter, minimum duration), frame targets, the events CSV, the sed_words builder on real Speech Commands clips
(onsets, reproducibility) and `evar sed` end to end with melspec."""

import os

import numpy as np
import pytest

from evar.errors import EvarError
from evar.sed import (Event, PostProcessing, decode_events, frame_targets, median_filter_frames, read_events,
                      sed_scores, write_events)
from helpers import SHARED, needs_shared

pytest.importorskip('sed_eval')


def _events(*items):
    return [Event(f, on, off, label) for f, on, off, label in items]


# Clip a: dog [1, 2] found with its onset 100 ms late; cat [3, 4] found 30 ms late but ending at 3.5; a false dog at
# [6, 7]. Clip b: cat [0.5, 1.5] detected as dog (a substitution).
REFERENCE = _events(('a', 1.0, 2.0, 'dog'), ('a', 3.0, 4.0, 'cat'), ('b', 0.5, 1.5, 'cat'))
ESTIMATED = _events(('a', 1.1, 2.0, 'dog'), ('a', 3.03, 3.5, 'cat'), ('a', 6.0, 7.0, 'dog'), ('b', 0.5, 1.5, 'dog'))


def test_sed_scores_match_hand_worked_values():
    s = sed_scores(REFERENCE, ESTIMATED, ['cat', 'dog'], ['a', 'b'])
    # Events: 3 reference, 4 estimated. 200 ms onset collar: dog (0.1 s) and cat (0.03 s) match, TP 2:
    # P 2/4, R 2/3, F1 = 2PR/(P+R) = (2/3)/(7/6) = 4/7.
    assert s.onset_f1_200ms == pytest.approx(4 / 7, abs=1e-9)
    # 50 ms: only cat, TP 1: P 1/4, R 1/3, F1 = (1/6)/(7/12) = 2/7.
    assert s.onset_f1_50ms == pytest.approx(2 / 7, abs=1e-9)
    # Onset 50 ms and offset within max(50 ms, 20 % of 1 s = 200 ms): dog's onset misses, cat's offset is 0.5 s off.
    assert s.onset_offset_f1_50ms == 0.0
    # 1 s segments. a: dog seg 1 (TP), cat seg 3 (TP), false dog seg 6 (FP, insertion). b: cat in segs 0 and 1
    # missed, dog there instead: FN 2, FP 2, two substitutions. F1 = 2TP/(2TP+FP+FN) = 4/(4+3+2) = 4/9;
    # ER = (S + D + I) / N_ref = (2 + 0 + 1) / 4.
    assert s.segment_f1_1s == pytest.approx(4 / 9, abs=1e-9)
    assert s.segment_er_1s == pytest.approx(3 / 4, abs=1e-9)


def test_sed_scores_perfect_and_empty():
    perfect = sed_scores(REFERENCE, REFERENCE, ['cat', 'dog'], ['a', 'b'])
    assert perfect.onset_f1_200ms == perfect.onset_offset_f1_50ms == perfect.segment_f1_1s == 1.0
    assert perfect.segment_er_1s == 0.0
    nothing = sed_scores(REFERENCE, [], ['cat', 'dog'], ['a', 'b'])  # sed_eval's NaN F1 (no estimate) reads as 0
    assert nothing.onset_f1_200ms == 0.0 and nothing.segment_f1_1s == 0.0
    assert nothing.segment_er_1s == 1.0  # every reference segment deleted


ACTIVITY = np.array([0, 0, 1, 1, 1, 0, 1, 0, 0, 0], dtype=float)[:, None]  # one class, hop 0.1 s


def test_decode_without_filtering():
    events = decode_events(ACTIVITY, ['x'], 'f', 0.1, PostProcessing(0.5, 0.0, 0.0))
    # Frames 2-4 (centres 0.2-0.4) span [0.15, 0.45]; frame 6 spans [0.55, 0.65].
    assert [(round(e.onset_sec, 6), round(e.offset_sec, 6)) for e in events] == [(0.15, 0.45), (0.55, 0.65)]


def test_decode_median_filter_fills_a_gap():
    assert median_filter_frames(0.3, 0.1) == 3 and median_filter_frames(0.2, 0.1) == 3  # made odd
    assert median_filter_frames(0.25, 0.01) == 25 and median_filter_frames(0.0, 0.01) == 1
    # A 3-frame median: [0,0,1,1,1,0,1,0,0,0] -> [0,0,1,1,1,1,0,0,0,0]: one event over frames 2-5.
    events = decode_events(ACTIVITY, ['x'], 'f', 0.1, PostProcessing(0.5, 0.3, 0.0))
    assert [(round(e.onset_sec, 6), round(e.offset_sec, 6)) for e in events] == [(0.15, 0.55)]


def test_decode_minimum_duration_and_threshold():
    events = decode_events(ACTIVITY, ['x'], 'f', 0.1, PostProcessing(0.5, 0.0, 0.2))
    assert [(round(e.onset_sec, 6), round(e.offset_sec, 6)) for e in events] == [(0.15, 0.45)]  # 0.1 s one dropped
    probs = np.array([[0.2, 0.9], [0.6, 0.9], [0.6, 0.1]])
    events = decode_events(probs, ['a', 'b'], 'f', 0.1, PostProcessing(0.55, 0.0, 0.0), window_sec=0.2)
    # Centres 0.1, 0.2, 0.3 (window / 2 + i * hop). a: frames 1-2 -> [0.15, 0.35]; b: frames 0-1 -> [0.05, 0.25].
    assert [(e.label, round(e.onset_sec, 6), round(e.offset_sec, 6)) for e in events] == [
        ('a', 0.15, 0.35), ('b', 0.05, 0.25)]
    with pytest.raises(EvarError, match=r'\[T, 2\]'):
        decode_events(probs[:, :1], ['a', 'b'], 'f', 0.1, PostProcessing())


def test_frame_targets():
    y = frame_targets(_events(('f', 0.15, 0.45, 'b')), ['a', 'b'], 8, 0.1)
    assert y[:, 0].sum() == 0 and np.flatnonzero(y[:, 1]).tolist() == [2, 3, 4]
    with pytest.raises(EvarError, match="'c'"):
        frame_targets(_events(('f', 0.1, 0.2, 'c')), ['a', 'b'], 8, 0.1)


def test_events_csv_round_trip_and_errors(tmp_path):
    path = tmp_path / 'events.csv'
    write_events(path, [('a.wav', 'train', REFERENCE[:2]), ('b.wav', 'test', []), ('c.wav', 'valid', REFERENCE[2:])])
    table = read_events(path)
    assert table.file_names == ('a.wav', 'b.wav', 'c.wav') and table.splits == ('train', 'test', 'valid')
    assert table.labels == ('cat', 'dog') and table.events[1] == ()
    assert [(e.onset_sec, e.label) for e in table.events[0]] == [(1.0, 'dog'), (3.0, 'cat')]
    assert table.rows('test').tolist() == [1]
    bad = tmp_path / 'bad.csv'
    for body, message in (('a,2.0,1.0,dog,train', 'line 2.*onset_sec < offset_sec'),
                          ('a,1,2,dog,train\na,3,4,dog,test', 'line 3: a is in splits train and test'),
                          ('a,one,2,dog,train', 'must be numbers'), ('a,,,,train', 'no event')):
        bad.write_text(f'file_name,onset_sec,offset_sec,label,split\n{body}\n')
        with pytest.raises(EvarError, match=message):
            read_events(bad)


def _small_speech_commands(tmp_path):
    """A Speech Commands test-set layout of real clips: 4 words of each split's speakers, and 12 noise cuts."""
    from evar.tasks.layout import hash_split
    from evar.tasks.sed_words import _speaker

    src = SHARED / 'data' / 'speech_commands_v2_test_a'
    root = tmp_path / 'spc'
    wanted = {'train': 4, 'valid': 4, 'test': 4}
    for word in ('yes', 'no', 'up', 'down', 'left', 'right'):
        taken = set()
        for f in sorted((src / word).iterdir()):
            split = hash_split(_speaker(f.name))
            if wanted[split] and split not in taken:  # at most one clip per word and split
                (root / word).mkdir(parents=True, exist_ok=True)
                os.symlink(f, root / word / f.name)
                wanted[split] -= 1
                taken.add(split)
    (root / '_silence_').mkdir()
    for f in sorted((src / '_silence_').iterdir())[:12]:
        os.symlink(f, root / '_silence_' / f.name)
    assert not any(wanted.values())
    return root


@needs_shared
def test_sed_words_scenes_reproducible_with_known_onsets(tmp_path):
    import soundfile as sf

    from evar.tasks.sed_words import SAMPLE_RATE, SCENE_SEC, plan_scenes, render_background, render_scene, sed_words

    root = _small_speech_commands(tmp_path)
    rows = sed_words(root, out_dir=tmp_path / 'a')
    assert {r[2] for r in rows} == {'train', 'valid', 'test'}
    table = read_events(tmp_path / 'a' / 'events.csv')
    assert sum(len(e) for e in table.events) == 12  # every word clip used once
    plans = {p.file_name: p for p in plan_scenes(root)}
    for name, events in zip(table.file_names, table.events):
        plan = plans[name]
        assert [(e.label, e.onset_sec) for e in events] == [(w.label, pytest.approx(w.onset_sec, abs=1e-4))
                                                            for w in plan.words]
        assert 1 <= len(events) <= 4
        wav, rate = sf.read(str(tmp_path / 'a' / name))
        assert rate == SAMPLE_RATE and len(wav) == int(SCENE_SEC * SAMPLE_RATE)
        scene, background = render_scene(plan, root), render_background(plan, root)
        np.testing.assert_allclose(wav, scene, atol=1 / 32768 + 1e-7)  # the file is the recipe, 16-bit
        inside = np.zeros(len(wav), dtype=bool)
        for e in events:
            inside[int(round(e.onset_sec * SAMPLE_RATE)):int(round(e.offset_sec * SAMPLE_RATE))] = True
        gain = scene[~inside] @ background[~inside] / (background[~inside] @ background[~inside])
        residual = scene - gain * background  # the words alone: nothing outside the annotated events
        assert np.abs(residual[~inside]).max() < 1e-9
        for e in events:  # each word at least as loud as the noise (SNR >= 0 dB), less its 5 ms fades
            span = residual[int(round(e.onset_sec * SAMPLE_RATE)):int(round(e.offset_sec * SAMPLE_RATE))]
            assert np.sqrt(np.mean(span ** 2)) > 0.5 * 0.02 * gain
    sed_words(root, out_dir=tmp_path / 'b')
    assert (tmp_path / 'b' / 'events.csv').read_bytes() == (tmp_path / 'a' / 'events.csv').read_bytes()
    first = table.file_names[0]
    assert (tmp_path / 'b' / first).read_bytes() == (tmp_path / 'a' / first).read_bytes()
    sed_words(root, out_dir=tmp_path / 'c', seed=1)
    assert (tmp_path / 'c' / 'events.csv').read_bytes() != (tmp_path / 'a' / 'events.csv').read_bytes()


@needs_shared
def test_sed_words_end_to_end_with_melspec(tmp_path):
    from evar.metadata import main as metadata_main
    from evar.modes.sed import SedHeadOptions, sed
    from evar.results import read_rows

    root = _small_speech_commands(tmp_path)
    work = tmp_path / 'work'
    assert metadata_main(['sed_words', str(root), '--work_root', str(work)]) == 0
    scores, post = sed('config/melspec.yaml', 'sed_words', work_root=work, results_dir=tmp_path / 'results',
                       logs_dir=tmp_path / 'logs', progress=False, head=SedHeadOptions(max_epochs=3, patience=2))
    assert scores.psds1 is None  # sed_words' protocol asks for no PSDS
    assert all(0 <= v <= 1 for k, v in scores.as_dict().items() if k not in ('segment_er_1s', 'psds1'))
    assert post.median_filter_sec == 0.25 and post.min_duration_sec in (0.125, 0.25)
    rows = read_rows(tmp_path / 'results' / 'sed_scores.csv')
    assert len(rows) == 1 and rows[0].mode == 'sed' and rows[0].metric == 'onset_f1_200ms'
    assert rows[0].score == pytest.approx(scores.onset_f1_200ms, abs=1e-5)
    assert len(list((tmp_path / 'logs').glob('*/events-test.csv'))) == 1
    assert list((work / 'cache').glob('frames-*.npy'))  # frame embeddings cached by content
    with pytest.raises(EvarError, match='no event annotations'):
        sed('config/melspec.yaml', 'fsdd', work_root=work, results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs')
