"""Audio-text retrieval (EVAR's retr_a2t_t2a.py): rank captions for each clip and clips for each caption.

A task's metadata is a captions CSV `file_name,caption,split` (one row per caption, any number of captions per
clip; `evar metadata clotho|audiocaps|ja_audiocaps <root>` writes one from the publishers' files). The test split's
clips are embedded whole (`crop: full`, the shared embedding path and cache) and its captions by the model's
`encode_text` (cached by model and caption content). Audio->text: each clip ranks every caption, and its rank is
that of its best-ranked own caption; text->audio: each caption ranks every clip, and its rank is that of its clip
(evar.metrics.audio_text_retrieval: R@1/5/10/50, mAP@10, median and mean rank, in percent as EVAR's).

Rows go to `results/retrieval_scores.csv`: EVAR's columns `model,task,a2tR1,a2tR5,a2tR10,a2tmAP10,t2aR1,t2aR5,
t2aR10,t2amAP10,weight`, then the other figures and the shared result columns (`evar.results.ResultRow`; its score
is the mean of the two R@1, as a fraction).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import EvarError

log = logging.getLogger('evar')
EVAR_RETRIEVAL_COLUMNS = ['model', 'task', 'a2tR1', 'a2tR5', 'a2tR10', 'a2tmAP10', 't2aR1', 't2aR5', 't2aR10',
                          't2amAP10', 'weight']
EXTRA_COLUMNS = ['a2tR50', 'a2tMedR', 'a2tMeanR', 't2aR50', 't2aMedR', 't2aMeanR', 'n_clips', 'n_captions']
CSV_TASK_UNIT_SEC = 30.0  # a bare captions CSV's unit length: only enters the cache key (clips are not cropped)


@dataclass(frozen=True)
class CaptionSet:
    """The clips and captions of one split of a captions CSV.

    Attributes:
        path: the CSV.
        split: the split read.
        file_names: the clips [A], in order of first appearance.
        captions: the captions [M], in file order.
        owner: int64 [M], the index into `file_names` of each caption's clip.
        content_hash: sha256 of the CSV's bytes.
    """
    path: Path
    split: str
    file_names: tuple
    captions: tuple
    owner: np.ndarray
    content_hash: str


def read_captions(path: Path, split: str = 'test') -> CaptionSet:
    """The `split` rows of a captions CSV (columns file_name, caption (or label), split; any number of rows per
    clip).

    Raises:
        EvarError: a missing file, missing columns, an empty field, an unknown split name, or no row in `split`.
    """
    from ..data import read_csv_rows
    from ..split_names import canonical_split

    path = Path(path)
    rows, content_hash = read_csv_rows(path, 'Captions CSV',
                                       '(clotho, audiocaps, ja_audiocaps) or write file_name,caption,split rows.')
    columns = set(rows[0]) if rows else set()
    text_column = 'caption' if 'caption' in columns else 'label'
    if not {'file_name', text_column, 'split'} <= columns:
        raise EvarError(f'Captions CSV {path} has columns {sorted(c for c in columns if c)}; expected file_name, '
                        'caption, split (one row per caption).')
    clips, captions, owner = {}, [], []
    for line, row in enumerate(rows, start=2):
        name, text = (row['file_name'] or '').strip(), (row[text_column] or '').strip()
        row_split = canonical_split(row['split'] or '')
        if not name or not text or row_split is None:
            raise EvarError(f'Captions CSV {path}, line {line}: expected a file_name, a caption and a split '
                            f'(train/valid/test), got {row!r}.')
        if row_split == split:
            owner.append(clips.setdefault(name, len(clips)))
            captions.append(text)
    if not captions:
        raise EvarError(f'Captions CSV {path} has no row in the {split} split.')
    return CaptionSet(path=path, split=split, file_names=tuple(clips), captions=tuple(captions),
                      owner=np.array(owner, dtype=np.int64), content_hash=content_hash)


def retrieval_task(task: str, data: Optional[str] = None):
    """The `Task` of a retrieval run: a built-in captions task (clotho, audiocaps, ja_audiocaps), a task YAML, or a
    captions CSV (its audio under `data`, default the CSV's folder).

    Raises:
        EvarError: an unknown task, a built-in task that is not a retrieval task, or a missing CSV.
    """
    from ..tasks import BUILTIN_TASKS, Task, get_task

    text = str(task)
    if text.endswith('.csv'):
        path = Path(text).expanduser()
        if not path.is_file():
            raise EvarError(f'Captions CSV {path} does not exist (expected file_name,caption,split rows).')
        return Task(name=path.stem, unit_sec=CSV_TASK_UNIT_SEC, metadata=path,
                    data=Path(data).expanduser() if data else path.parent)
    spec = get_task(text)
    if text in BUILTIN_TASKS and not spec.captions:
        captioned = [n for n, t in BUILTIN_TASKS.items() if t.captions]
        raise EvarError(f'Task {text} is a classification task; retrieval takes a captions task ({", ".join(captioned)}), '
                        'a task YAML or a file_name,caption,split CSV. For zero-shot classification use zeroshot.py.')
    return replace(spec, data=Path(data).expanduser()) if data else spec


def caption_metadata(captions: CaptionSet):
    """An `evar.data.Metadata` of the caption set's clips (one test row each), so the shared embedding path embeds
    and caches them; its content hash covers the CSV and the split."""
    from ..data import Metadata

    n = len(captions.file_names)
    digest = hashlib.sha256(f'{captions.content_hash}:{captions.split}'.encode()).hexdigest()
    return Metadata(path=captions.path, file_names=captions.file_names, labels=(('',),) * n, splits=('test',) * n,
                    folds=None, content_hash=digest)


def retrieval(config_file, task, options: str = '', data: Optional[str] = None, work_root: Optional[Path] = None,
              results_dir: Path = Path('results'), logs_dir: Path = Path('logs'), device: Optional[str] = None,
              bf16: bool = False, progress: bool = True, recompute: bool = False) -> tuple:
    """Runs audio->text and text->audio retrieval on the test split of `task` and appends a row to
    `results_dir`/retrieval_scores.csv.

    Args:
        config_file: the model YAML (a model with `encode_text`).
        task: clotho, audiocaps, ja_audiocaps, a task YAML, or a captions CSV.
        options: config overrides (`crop` is always `full`).
        data: the audio folder of a CSV task (default the CSV's folder), or one replacing a task's.
        work_root, results_dir, logs_dir, device, bf16, progress, recompute: as `evar.modes.linear.lineareval`.

    Returns:
        (audio->text, text->audio) `evar.metrics.RetrievalScores`.

    Raises:
        EvarError: bad input (before any embedding), or a model without `encode_text`.
    """
    from ..captions import text_embeddings
    from ..config import load_config
    from ..embed.source import TaskEmbeddings, pick_device
    from ..metrics import audio_text_retrieval
    from ..models.audio_text import text_mode_options, text_route
    from ..paths import default_work_root
    from .linear import PreparedRun, common_settings, settings_id, setup_logging

    t_start = time.perf_counter()
    cfg = load_config(config_file, text_mode_options(config_file, options))  # whole clips, the joint space
    task_def = retrieval_task(task, data)
    work_root = Path(work_root) if work_root is not None else default_work_root()
    captions = read_captions(task_def.metadata_path(work_root))
    metadata = caption_metadata(captions)
    source = TaskEmbeddings(cfg, task_def, metadata, work_root, pick_device(device), bf16=bf16, progress=progress)
    source.check_audio_files()
    text_route(source.model(), str(cfg.path), need='cosine')
    prepared = PreparedRun(cfg=cfg, task=task_def, metadata=metadata, folds=[1], plans={}, source=source,
                           work_root=work_root)
    settings = {**common_settings(prepared), 'mode': 'retrieval', 'split': captions.split}
    run_id = settings_id(settings)
    log_dir = Path(logs_dir) / f'{cfg.name}-{task_def.name}-retrieval-{run_id}'
    setup_logging(log_dir)
    log.info(f'retrieval {cfg.name} ({cfg.audio_repr}) on {task_def.name}: {len(captions.file_names)} clips, '
             f'{len(captions.captions)} captions ({captions.split} split)')
    try:
        audio = source.embeddings(1, np.arange(0), recompute=recompute)
        text = text_embeddings(source, captions.captions, recompute)
        a2t, t2a = audio_text_retrieval(audio, text, captions.owner)
        for name, r in (('Audio to caption (a2t)', a2t), ('Caption to audio (t2a)', t2a)):
            log.info(f'{captions.split}: {name}: r1: {r.recall[1]:.2f}, r5: {r.recall[5]:.2f}, r10: {r.recall[10]:.2f}, '
                     f'r50: {r.recall[50]:.2f}, medr: {r.median_rank:.2f}, meanr: {r.mean_rank:.2f}, '
                     f'mAP10: {r.map10:.3f}')
        _write_ranks(log_dir, captions, a2t, t2a)
        _record(prepared, a2t, t2a, captions, run_id, settings, Path(results_dir), log_dir,
                time.perf_counter() - t_start)
    except BaseException as e:  # the log folder keeps the reason a run ended
        logging.getLogger('evar.runlog').error(f'run failed ({type(e).__name__}) {e}')
        raise
    return a2t, t2a


def _write_ranks(log_dir: Path, captions: CaptionSet, a2t, t2a) -> None:
    """Each clip's a2t rank and each caption's t2a rank, under `log_dir`."""
    from .linear import write_csv

    write_csv(log_dir / 'ranks-a2t.csv', ['file_name', 'rank'], list(zip(captions.file_names, a2t.ranks.tolist())))
    write_csv(log_dir / 'ranks-t2a.csv', ['file_name', 'caption', 'rank'],
              [(captions.file_names[o], c, r) for o, c, r in zip(captions.owner, captions.captions, t2a.ranks.tolist())])


def _record(prepared, a2t, t2a, captions: CaptionSet, run_id: str, settings: dict, results_dir: Path, log_dir: Path,
            elapsed: float) -> None:
    """Appends the run's row to results_dir/retrieval_scores.csv (EVAR's columns, then the others)."""
    from ..results import COLUMNS, ResultRow, append_rows

    cfg = prepared.cfg
    score = (a2t.recall[1] + t2a.recall[1]) / 200.0
    shared = ResultRow(representation=cfg.name, task=prepared.task.name, score=score, run_id=run_id,
                       metric='mean_R@1', mode='retrieval', head='cosine', config_hash=cfg.model_hash()[:16],
                       weight_hash=prepared.source.weight_digest(), elapsed_sec=elapsed,
                       timestamp=time.strftime('%Y-%m-%dT%H:%M:%S'),
                       settings=json.dumps(settings, sort_keys=True, default=str, separators=(',', ':')),
                       report=(f'Retrieval: {cfg.name} {prepared.task.name} a2t R@1 {a2t.recall[1]:.2f}, t2a R@1 '
                               f'{t2a.recall[1]:.2f}; config {cfg.path}; log {log_dir}'))
    figures = {}
    for prefix, r in (('a2t', a2t), ('t2a', t2a)):
        figures.update({f'{prefix}R{k}': v for k, v in r.recall.items()})
        figures.update({f'{prefix}mAP10': r.map10, f'{prefix}MedR': r.median_rank, f'{prefix}MeanR': r.mean_rank})
    weight = getattr(cfg.params, 'weight_file', None) or getattr(cfg.params, 'model_id', None) or ''
    row = {'model': cfg.name, 'task': prepared.task.name, 'weight': str(weight),
           'n_clips': str(len(captions.file_names)), 'n_captions': str(len(captions.captions)),
           **{k: f'{v:.5f}' for k, v in figures.items()}, **shared.to_csv()}
    columns = EVAR_RETRIEVAL_COLUMNS + EXTRA_COLUMNS + [c for c in COLUMNS if c not in ('task',)]
    append_rows(results_dir / 'retrieval_scores.csv', [row], columns=columns)
    log.info(f'-> {results_dir / "retrieval_scores.csv"}')


def retrieval_command(config_file: str, task: str, options: str = '', data: Optional[str] = None,
                      work_root: Optional[str] = None, results_dir: str = 'results', logs_dir: str = 'logs',
                      device: Optional[str] = None, bf16: bool = False, progress: bool = True,
                      recompute: bool = False) -> None:
    """Audio->text and text->audio retrieval on TASK's test split with the audio-text model of CONFIG_FILE
    (EVAR's retr_a2t_t2a.py): R@1/5/10/50, mAP@10, median and mean rank in both directions, appended to
    results/retrieval_scores.csv.

    Args:
        config_file: model YAML with a text encoder (e.g. config/clap_htsat_unfused.yaml).
        task: clotho, audiocaps, ja_audiocaps (metadata from `evar metadata TASK ROOT`), a task YAML, or a
            file_name,caption,split CSV.
        options: config overrides 'key=value,+new_key=value'.
        data: audio folder of a CSV task (default: the CSV's folder).
        work_root, results_dir, logs_dir, device, bf16, progress, recompute: as `evar linear`.
    """
    retrieval(config_file, task, options=options, data=data, work_root=work_root, results_dir=Path(results_dir),
              logs_dir=Path(logs_dir), device=device, bf16=bf16, progress=progress, recompute=recompute)
