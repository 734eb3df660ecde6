"""Test helpers (conftest.py keeps only pytest fixtures): where the project and ../shared are, marks for tests that
need the shared data, running the entry scripts as a user would, and the checks several test files repeat.

Markers (registered in pyproject.toml): `shared` on tests that read ../shared (the `needs_shared` / `needs_byola`
decorators add it with their skip), `slow` on tests that take more than about 5 s, so `python -m pytest -m "not
slow"` is a quick local run.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / 'shared'
BYOLA_D512 = SHARED / 'weights' / 'AudioNTT2020-BYOLA-64x96d512.pth'


def _needs(available: bool, reason: str):
    """A decorator: the `shared` marker, and a skip with `reason` when the shared file or folder is absent."""
    skip = pytest.mark.skipif(not available, reason=reason)

    def mark(test):
        return pytest.mark.shared(skip(test))
    return mark


needs_shared = _needs((SHARED / 'data').is_dir(),
                      f'real data folder {SHARED} is absent (it sits beside the project in CI)')
needs_byola = _needs(BYOLA_D512.is_file(), f'BYOL-A weights {BYOLA_D512} are absent')


def run_script(script, *args, cwd, env=None):
    """Runs one of the project's entry scripts in a subprocess; returns the CompletedProcess."""
    full_env = {**os.environ, 'PYTHONPATH': str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)


def batch_equals_single(model, lengths, atol=1e-4):
    """Embeds clips of `lengths` as one padded batch and one by one; asserts they agree (padding invariance)."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    wav = torch.randn(len(lengths), max(lengths)) * 0.1
    lengths = torch.tensor(lengths)
    with torch.inference_mode():
        batch = model.embed(wav, lengths)
        for i, n in enumerate(lengths.tolist()):
            single = model.embed(wav[i:i + 1, :n], lengths[i:i + 1])
            np.testing.assert_allclose(batch[i].numpy(), single[0].numpy(), rtol=1e-4, atol=atol)
    return batch


def logreg_scores_on_shared(tmp_path, task, dataset, configs):
    """Builds `task` from ../shared/data/`dataset` and returns {name: logreg test score} for `configs`, a mapping
    name -> (config path, options)."""
    from evar.modes.linear import HeadOptions, lineareval
    from evar.metadata import main as metadata_main

    work = tmp_path / 'work'
    assert metadata_main([task, str(SHARED / 'data' / dataset), '--work_root', str(work)]) == 0
    scores = {name: lineareval(config, task, options=options, work_root=work, progress=False,
                               results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs',
                               head=HeadOptions(head='logreg'))[0].score
              for name, (config, options) in configs.items()}
    print(f'{task} logreg accuracy:', scores)
    return scores


def demo_score(tmp_path, work, config, options, representation, head='logreg', epochs=None, stderr_has=()):
    """Runs lineareval.py on the demo task with `config` and `--options options` (the `head`, or the default head
    when None, trained `epochs` when given); asserts it exits 0 and writes one demo row for `representation` with a
    score in [0, 1], and that stderr holds each of `stderr_has`; returns the score."""
    from evar.results import read_scores

    args = [*(['--head', head] if head else []), *(['--epochs', epochs] if epochs is not None else [])]
    proc = run_script('lineareval.py', config, 'demo', *args, '--options', options, '--work_root', work, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for text in stderr_has:
        assert text in proc.stderr, proc.stderr
    rows = read_scores(tmp_path / 'results' / 'scores.csv')
    assert len(rows) == 1 and rows[0]['representation'] == representation and rows[0]['task'] == 'demo', rows
    score = float(rows[0]['score'])
    assert 0.0 <= score <= 1.0, rows
    return score


def missing_weights_error(tmp_path, config, via='lineareval'):
    """Runs lineareval.py on the demo task (or `python -m evar.check` with via='check') with a shipped `config`
    whose weights are absent; asserts it exits 1 with exactly one `Error:` line and no traceback; returns that line."""
    if via == 'check':
        proc = subprocess.run([sys.executable, '-m', 'evar.check', str(config)], cwd=tmp_path, capture_output=True,
                              text=True, env={**os.environ, 'PYTHONPATH': str(ROOT)}, timeout=300)
    else:
        proc = run_script('lineareval.py', config, 'demo', '--work_root', tmp_path / 'w', cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('Error:')]
    assert proc.returncode == 1 and len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    return errors[0]


def pad_clips(clips):
    """(waves [B, N], lengths [B]) of 1-D clips (tensors or arrays), zero-padded by the data loader's own collate."""
    import numpy as np

    from evar.data import collate_clips

    wav, lengths, _ = collate_clips([(np.asarray(c, dtype=np.float32), None) for c in clips])
    return wav, lengths


def evar_reference_gaps(embeddings, reference, index) -> tuple:
    """(largest |norm - EVAR's| / EVAR's norm, largest |component - EVAR's| / EVAR's norm) over the clips:
    `embeddings` [clips, D], `reference` (EVAR's L2 norm, EVAR's components at `index`) per clip, in that order."""
    import numpy as np

    norms, components = [], []
    for row, (norm, values) in zip(embeddings, reference):
        norms.append(abs(np.linalg.norm(row) - norm) / norm)
        components.append(np.abs(row[index] - np.asarray(values)).max() / norm)
    return max(norms), max(components)
