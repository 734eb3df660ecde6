"""End-to-end checks of an audio-text (CLAP-style) model through zeroshot.py and retr_a2t_t2a.py, shared by the
CLAP families' test files: each runs the script on real clips of ../shared and recomputes the score with numpy from
the cached embeddings (clip and text), so only the family's config differs between the families' tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import SHARED, run_script


def cached_embeddings(work: Path) -> tuple:
    """(clip embeddings [N, D], text embeddings [M, D]) float64, from the embedding cache under `work`."""
    cached = {json.loads(p.read_text()).get('kind', 'clip'): np.load(p.with_suffix('.npy'))
              for p in (work / 'cache').glob('embs-*.json')}
    return cached['clip'].astype(np.float64), cached['text'].astype(np.float64)


def check_zeroshot_esc50(tmp_path: Path, config: Path, dim: int, every: int = 1) -> float:
    """zeroshot.py on the shared ESC-50 subset (414 clips; every `every`-th row of its metadata when > 1, for slow
    tiny models) with two templates; asserts the row and that its accuracy equals argmax of cosine similarity with
    the ensembled class embeddings (numpy). Returns the accuracy."""
    from evar.metadata import main as metadata_main

    work = tmp_path / 'work'
    assert metadata_main(['esc50', str(SHARED / 'data' / 'ESC-50'), '--work_root', str(work)]) == 0
    if every > 1:
        lines = (work / 'metadata' / 'esc50.csv').read_text().splitlines(keepends=True)
        (work / 'metadata' / 'esc50.csv').write_text(lines[0] + ''.join(lines[1::every]))
    proc = run_script('zeroshot.py', config, 'esc50', '--templates', "['the sound of {}', '{} can be heard']",
                      '--work_root', work, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / 'results' / 'scores.csv', newline='') as f:
        (row,) = list(csv.DictReader(f))
    assert (row['task'], row['mode'], row['metric']) == ('zs_esc50', 'zeroshot', 'accuracy')
    with open(work / 'metadata' / 'esc50.csv', newline='') as f:
        meta = list(csv.DictReader(f))
    audio, text = cached_embeddings(work)
    classes = sorted({r['label'] for r in meta})
    assert audio.shape == (len(meta), dim) and text.shape == (2 * len(classes), dim)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    sim = audio @ (text[0::2] + text[1::2]).T  # captions class by class, two templates each; argmax ignores norms
    expected = np.mean(sim.argmax(1) == np.array([classes.index(r['label']) for r in meta]))
    assert float(row['score']) == pytest.approx(expected, abs=5e-6)  # the CSV keeps 5 decimals
    return float(expected)


def check_retrieval(tmp_path: Path, config: Path, dim: int, n_clips: int = 6) -> dict:
    """retr_a2t_t2a.py on the first `n_clips` shared ESC-50 clips with 1, 3 and 7 captions in turn; asserts R@1,
    R@5 and mAP@10 in both directions against ranks recomputed from the cached embeddings. Returns the CSV row."""
    from test_retrieval import reference_ranks, write_csv

    esc = SHARED / 'data' / 'ESC-50'
    with open(esc / 'meta' / 'esc50.csv', newline='') as f:
        clips = list(csv.DictReader(f))[:n_clips]
    counts = [(1, 3, 7)[i % 3] for i in range(n_clips)]
    rows = [(f'audio/{c["filename"]}', f'{c["category"].replace("_", " ")} {k}', 'test')
            for c, n in zip(clips, counts) for k in range(n)]
    captions = write_csv(tmp_path / 'captions.csv', ['file_name', 'caption', 'split'], rows)
    work = tmp_path / 'work'
    proc = run_script('retr_a2t_t2a.py', config, captions, '--data', esc, '--work_root', work, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    audio, text = cached_embeddings(work)
    assert audio.shape == (n_clips, dim) and text.shape == (len(rows), dim)
    sim = (audio / np.linalg.norm(audio, axis=1, keepdims=True)) @ (text / np.linalg.norm(text, axis=1,
                                                                                          keepdims=True)).T
    a2t, t2a, a2t_map = reference_ranks(sim, np.repeat(np.arange(n_clips), counts))
    with open(tmp_path / 'results' / 'retrieval_scores.csv', newline='') as f:
        (row,) = list(csv.DictReader(f))
    for k in (1, 5):
        assert float(row[f'a2tR{k}']) == pytest.approx(100 * np.mean(a2t <= k), abs=1e-5)
        assert float(row[f't2aR{k}']) == pytest.approx(100 * np.mean(t2a <= k), abs=1e-5)
    assert float(row['a2tmAP10']) == pytest.approx(a2t_map, abs=1e-5)
    assert float(row['t2amAP10']) == pytest.approx(100 * np.mean(np.where(t2a <= 10, 1 / t2a, 0)), abs=1e-5)
    return row
