"""evar models as feature extractors for the OPERA respiratory-audio benchmark (Zhang et al., NeurIPS 2024 Datasets
and Benchmarks; https://github.com/evelyn0414/OPERA), without patching OPERA.

OPERA's evaluation reads features from files: each task's processing step lists its clips in
`feature/<task>_eval/<list>.npy` (paths relative to the OPERA folder) and `src.benchmark.linear_eval --task T
--pretrain NAME --dim D` loads `feature/<task>_eval/<NAME><D>_feature<suffix>.npy`, an array [N, D] row-aligned with
that list. This script writes that file from an evar model (any YAML in evar's config/, built by evar's model
registry), so `linear_eval` evaluates it as it evaluates OPERA's own models. Facts from OPERA commit
3622310e667afb8aa40169050b4dd45de75946a2 (src/benchmark/processing/*_processing.py, src/benchmark/linear_eval.py).

Extraction is deterministic: every clip is embedded whole (no crop: EVAR's OPERA plugin cropped long clips at random),
padded clips in a batch are masked (evar's padding-aware pooling), and a model that standardises its front end
(BYOL-A) takes its statistics from the task's training rows only, every one of them, in list order.

Run from the OPERA folder:  python $EVAR/plugin/OPERA/evar_opera.py icbhidisease $EVAR/config/byola.yaml evar_byola
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Optional

import numpy as np

from evar.errors import EvarError

OPERA_COMMIT = '3622310e667afb8aa40169050b4dd45de75946a2'
# Names linear_eval treats as its baselines: it does not append the dimension to them, so they cannot name an evar model.
OPERA_BASELINES = ('vggish', 'opensmile', 'clap', 'audiomae')


@dataclass(frozen=True)
class OperaTask:
    """Where one OPERA task keeps its clip list and reads its features (paths relative to the OPERA folder).

    Attributes:
        feature_dir: the task's folder, e.g. 'feature/copd_eval/'.
        sound_list: the .npy array of clip paths [N] the host's processing step wrote.
        feature_suffix: linear_eval reads `feature_dir + NAME + str(dim) + feature_suffix`.
        linear_eval_args: the `--task ...` arguments of linear_eval for this task.
        split_file: .npy [N] of 'train'/'val'/'test' (the host's split); training rows set normalisation statistics.
        stratify_labels: for tasks whose linear_eval splits at random instead (Coswara): the .npy [N] of labels that
            it stratifies scikit-learn's train_test_split(test_size=0.2, random_state=1337) with.
    """
    feature_dir: str
    sound_list: str
    feature_suffix: str
    linear_eval_args: str
    split_file: Optional[str] = None
    stratify_labels: Optional[str] = None


def _coswara(label: str, modality: str = 'cough-shallow') -> OperaTask:
    broad = modality.split('-')[0]
    return OperaTask('feature/coswara_eval/', f'{broad}_aligned_filenames_{label}_w_{modality}.npy',
                     f'_feature_{modality}_{label}.npy', f'--task coswara{label} --modality {modality}',
                     stratify_labels=f'{broad}_aligned_{label}_label_{modality}.npy')


OPERA_TASKS = MappingProxyType({
    'icbhidisease': OperaTask('feature/icbhidisease_eval/', 'sound_dir_loc.npy', '_feature.npy',
                              '--task icbhidisease', split_file='split.npy'),
    'copd': OperaTask('feature/copd_eval/', 'sound_dir_loc.npy', '_feature.npy', '--task copd',
                      split_file='train_test_split.npy'),
    'kauh': OperaTask('feature/kauh_eval/', 'sound_dir_loc_subset.npy', '_feature_both.npy', '--task kauh',
                      split_file='train_test_split.npy'),
    'coughvidcovid': OperaTask('feature/coughvid_eval/', 'sound_dir_loc_covid.npy', '_feature_covid.npy',
                               '--task coughvidcovid', split_file='split_covid.npy'),
    'coughvidsex': OperaTask('feature/coughvid_eval/', 'sound_dir_loc_gender.npy', '_feature_gender.npy',
                             '--task coughvidsex', split_file='split_gender.npy'),
    'coswarasmoker': _coswara('smoker'),
    'coswarasex': _coswara('sex'),
})


@dataclass(frozen=True)
class OperaFeatures:
    """What `extract_task_features` wrote.

    Attributes:
        path: the feature file, float32 [N, dim].
        dim: the embedding size D (linear_eval's --dim).
        linear_eval: the OPERA command line that evaluates it.
        norm_stats: (mean, std) the front end was standardised with, or None.
    """
    path: Path
    dim: int
    linear_eval: str
    norm_stats: Optional[tuple]


def _load_list(path: Path, what: str, task: str) -> np.ndarray:
    if not path.is_file():
        raise EvarError(f'OPERA task {task}: {what} {path} does not exist. Run OPERA\'s processing step for the task '
                        f'once (it writes the list), from the OPERA folder.')
    return np.asarray(np.load(path, allow_pickle=False))


def train_rows(task: str, spec: OperaTask, root: Path, n: int) -> np.ndarray:
    """Indices [n_train] of the task's training rows, by the host's own split rule.

    Raises:
        EvarError: the split or label file is missing or does not have one entry per clip.
    """
    folder = root / spec.feature_dir
    if spec.split_file:
        split = _load_list(folder / spec.split_file, 'split file', task)
        if len(split) != n:
            raise EvarError(f'OPERA task {task}: {folder / spec.split_file} has {len(split)} entries for {n} clips.')
        return np.flatnonzero(split.astype(str) == 'train')
    from sklearn.model_selection import train_test_split

    labels = _load_list(folder / spec.stratify_labels, 'label file', task)
    if len(labels) != n:
        raise EvarError(f'OPERA task {task}: {folder / spec.stratify_labels} has {len(labels)} labels for {n} clips.')
    train, _ = train_test_split(np.arange(n), test_size=0.2, random_state=1337, stratify=labels)
    return np.sort(train)


def extract_task_features(task: str, config: str, name: str, options: str = '', opera_root='.',
                          device: Optional[str] = None, batch_size: int = 16, num_workers: int = 0) -> OperaFeatures:
    """Embeds every clip of an OPERA task with an evar model and writes the feature file linear_eval reads.

    Args:
        task: a key of `OPERA_TASKS` (linear_eval's --task name).
        config: an evar model YAML (e.g. $EVAR/config/byola.yaml).
        name: linear_eval's --pretrain name (letters, digits, '_' or '-'; not one of OPERA's baselines).
        options: evar's `--options` string ('weight_file=/x.pth,norm_stats=[-5.4,5.0]').
        opera_root: the OPERA folder (clip paths in the list are relative to it).
        device: torch device; None: cuda when available.
        batch_size: clips per forward pass (the embeddings do not depend on it: padding is masked).
        num_workers: audio decoding processes (0: in this process).

    Returns:
        OperaFeatures: the file written, float32 [N, D] in list order.

    Raises:
        EvarError: unknown task, bad name, missing list or split file, bad config, or an unreadable clip (named).
    """
    from evar.config import load_config
    from evar.data import ClipDataset
    from evar.embed.extract import ExtractSettings, extract_embeddings
    from evar.embed.source import pick_device
    from evar.models import create_model

    if task not in OPERA_TASKS:
        raise EvarError(f'Unknown OPERA task {task!r}; known: {", ".join(OPERA_TASKS)}.')
    if not name or not all(c.isalnum() or c in '_-' for c in name) or name in OPERA_BASELINES:
        raise EvarError(f'OPERA feature name {name!r}: use letters, digits, "_" or "-", and none of OPERA\'s baseline '
                        f'names {list(OPERA_BASELINES)} (linear_eval does not append the dimension to those).')
    spec, root = OPERA_TASKS[task], Path(opera_root)
    files = [str(f) for f in _load_list(root / spec.feature_dir / spec.sound_list, 'clip list', task)]
    rows = train_rows(task, spec, root, len(files))
    cfg = load_config(config, options)
    model = create_model(cfg.audio_repr, params=cfg.params)
    if model.needs_norm_stats and model.norm_mean is None and len(rows) == 0:
        raise EvarError(f'OPERA task {task}: {cfg.path} needs normalisation statistics from training clips and the '
                        'split has none; set norm_stats in --options.')
    device = pick_device(device)
    model.to(device)
    dataset = ClipDataset(root, files, model.sample_rate, unit_sec=1.0, crop_policy='full')
    settings = ExtractSettings(batch_size=batch_size, num_workers=num_workers, device=device, progress=False)
    features = extract_embeddings(model, dataset, rows, settings).astype(np.float32)
    dim = int(features.shape[1])
    path = root / spec.feature_dir / f'{name}{dim}{spec.feature_suffix}'
    np.save(path, features)
    stats = None if model.norm_mean is None else (model.norm_mean, model.norm_std)
    command = f'python -m src.benchmark.linear_eval {spec.linear_eval_args} --pretrain {name} --dim {dim}'
    return OperaFeatures(path=path, dim=dim, linear_eval=command, norm_stats=stats)


def main(argv=None) -> int:
    """Command line: `evar_opera.py TASK CONFIG NAME [--options ...] [--opera_root .] [--device cuda]`; prints the
    feature file and the linear_eval command. Returns the exit status (2 and one `Error:` line on bad input)."""
    parser = argparse.ArgumentParser(description='Write OPERA features of an evar model (run from the OPERA folder).')
    parser.add_argument('task', help=f'one of {", ".join(OPERA_TASKS)}')
    parser.add_argument('config', help='evar model YAML, e.g. $EVAR/config/byola.yaml')
    parser.add_argument('name', help='the --pretrain name linear_eval will be given')
    parser.add_argument('--options', default='', help="evar config overrides, 'key=value,key=value'")
    parser.add_argument('--opera_root', default='.', help='the OPERA folder (default: the current one)')
    parser.add_argument('--device', default=None)
    parser.add_argument('--batch_size', type=int, default=16)
    args = parser.parse_args(argv)
    try:
        out = extract_task_features(args.task, args.config, args.name, args.options, args.opera_root, args.device,
                                    args.batch_size)
    except EvarError as e:
        print(f'Error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {out.path} (float32 [N, {out.dim}]); normalisation statistics: {out.norm_stats}')
    print(out.linear_eval)
    return 0


if __name__ == '__main__':
    sys.exit(main())
