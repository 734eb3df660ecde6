"""Zero-shot classification (EVAR's zeroshot.py): score every test clip against a caption per class, no training.

Each class gets one or more captions (evar.captions: EVAR's rules, templates, or a captions YAML). A model with a
joint audio-text space (`encode_text`, evar.models.audio_text) scores a clip by the cosine similarity of its
L2-normalised whole-clip embedding with each class's text embedding (a prompt ensemble's normalised mean); a
generative model (`caption_log_likelihood` only) by the length-normalised log-likelihood of each caption given the
clip, pooled over a class's captions by `caption_pool`: `max` by default (a class whose captions are alternatives,
as Speech Commands' `_unknown_` = any of 25 other words, is as likely as its best caption; their mean would rank
it below every single word), `mean` for paraphrases. Single-label tasks report accuracy (argmax), multi-label ones mAP (the
task's metric). Every fold's test clips are scored, so a k-fold task scores all of its clips, as EVAR does.

Clips are embedded whole (`crop: full`, through the shared embedding path and its cache); models that pad or
repeat to their own input length do so themselves. Rows go to `results/scores.csv` with task `zs_<task>` (EVAR's
convention) and mode `zeroshot`; `logs/<model>-zs_<task>-<run_id>/` holds the per-clip predictions and the
captions used.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import EvarError

log = logging.getLogger('evar')


@dataclass
class ZeroShotResult:
    """A zero-shot run's outcome.

    Attributes:
        score: the task's metric over every scored clip (accuracy or mAP, a fraction).
        metric: the metric's name.
        route: 'cosine' (joint embedding space) or 'likelihood' (caption log-likelihood).
        rows: metadata rows scored, int64 [N], in score order (fold by fold).
        scores: float64 [N, C] class scores (cosine similarity or mean log-likelihood).
        targets: [N] class indices or [N, C] 0/1.
        classes: class labels, score-column order.
        log_dir: the run's log folder.
    """
    score: float
    metric: str
    route: str
    rows: np.ndarray
    scores: np.ndarray
    targets: np.ndarray
    classes: tuple
    log_dir: Optional[Path] = None


def scored_rows(metadata, folds: list) -> np.ndarray:
    """The test rows of every fold, fold by fold (for a k-fold task, every clip once), int64 [N]."""
    return np.concatenate([metadata.split_indices(fold)['test'] for fold in folds]).astype(np.int64)


def cosine_scores(audio_embs: np.ndarray, class_embs: np.ndarray) -> np.ndarray:
    """Cosine similarities float64 [N, C] of clip embeddings [N, D] with class embeddings [C, D] (both normalised
    here; a mean of unit pieces is shorter than one)."""
    a = np.asarray(audio_embs, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(min=1e-12)
    c = np.asarray(class_embs, dtype=np.float64)
    return a @ (c / np.linalg.norm(c, axis=1, keepdims=True).clip(min=1e-12)).T


CAPTION_POOLS = ('max', 'mean')


def _check_pool(pool: str) -> None:
    if pool not in CAPTION_POOLS:
        raise EvarError(f'caption_pool must be one of {", ".join(CAPTION_POOLS)}; got {pool!r}.')


def pool_captions(scores: np.ndarray, owner: np.ndarray, n_classes: int, pool: str) -> np.ndarray:
    """Class scores from caption scores: float64 [N, n_classes] from `scores` [N, n_captions], caption j belonging to
    class `owner[j]`, by the `max` or the `mean` over each class's captions.

    Raises:
        EvarError: `pool` not in CAPTION_POOLS.
    """
    _check_pool(pool)
    reduce = np.max if pool == 'max' else np.mean
    return np.stack([reduce(scores[:, owner == c], axis=1) for c in range(n_classes)], axis=1)


def likelihood_scores(source, rows: np.ndarray, texts: tuple, owner: np.ndarray, n_classes: int,
                      pool: str = 'max') -> np.ndarray:
    """`caption_log_likelihood` of every caption pooled per class (`pool_captions`), float64 [len(rows), n_classes];
    whole clips, `extract_batch_size` at a time, under inference mode (not cached: the scores depend on the
    captions)."""
    import torch

    from ..data import ClipDataset, collate_clips

    model = source.model().eval()
    root, _ = source.data_root()
    dataset = ClipDataset(root, [source.metadata.file_names[r] for r in rows], source.sample_rate,
                          source.task.unit_sec, 'full')
    out = np.zeros((len(rows), len(texts)))
    step = source.extract_batch_size
    with torch.inference_mode():
        for start in range(0, len(dataset), step):
            wav, lengths, info = collate_clips([dataset[i] for i in range(start, min(start + step, len(dataset)))])
            if wav is None:
                raise EvarError(info)
            ll = model.caption_log_likelihood(wav.to(source.device), lengths.to(source.device), list(texts))
            out[start:start + len(wav)] = ll.double().cpu().numpy()
    return pool_captions(out, owner, n_classes, pool)


def zeroshot(config_file, task, options: str = '', templates=(), captions: Optional[Path] = None,
             unit_sec: Optional[float] = None, work_root: Optional[Path] = None, results_dir: Path = Path('results'),
             logs_dir: Path = Path('logs'), device: Optional[str] = None, bf16: bool = False, progress: bool = True,
             recompute: bool = False, caption_pool: Optional[str] = None) -> ZeroShotResult:
    """Runs zero-shot classification of `task` with the audio-text model of `config_file` and appends a row to
    `results_dir`/scores.csv (task `zs_<task>`, mode `zeroshot`, head = the route).

    Args:
        config_file: the model YAML.
        task: a built-in task name or a task YAML.
        options: config overrides 'key=value,+key=value' (`crop` is always `full`: whole clips).
        templates: caption templates with one `{}` for the class name (a prompt ensemble when several); () for
            EVAR's rules.
        captions: a captions YAML (class label -> caption or list), overriding templates.
        unit_sec: overrides the task's unit length (it only enters the cache key: clips are not cropped).
        work_root, results_dir, logs_dir, device, bf16, progress, recompute: as `evar.modes.linear.lineareval`.
        caption_pool: how the likelihood route pools a class's caption scores, 'max' (None: the default) or
            'mean'; the cosine route averages the captions' embeddings (EVAR's prompt ensemble) and refuses it.

    Raises:
        EvarError: bad input (before any embedding), a model without a text side, or caption_pool with the cosine
            route.
    """
    from ..captions import class_captions, ensemble_embeddings, text_embeddings
    from ..metrics import score as metric_score
    from ..models.audio_text import text_mode_options, text_route
    from ..splits import encode_labels, is_multi_label
    from .linear import common_settings, embed_task, prepare_run, settings_id, setup_logging, write_csv, \
        write_predictions

    t_start = time.perf_counter()
    if caption_pool is not None:
        _check_pool(caption_pool)
    options = text_mode_options(config_file, options)  # whole clips; a family's joint-space options
    prepared = prepare_run(config_file, task, options, seeds=(), unit_sec=unit_sec, work_root=work_root,
                           device=device, bf16=bf16, progress=progress)
    cfg, task_def, metadata, source = prepared.cfg, prepared.task, prepared.metadata, prepared.source
    multi_label = is_multi_label(task_def)
    classes = tuple(sorted({label for labels in metadata.labels for label in labels}))
    rows = scored_rows(metadata, prepared.folds)
    targets = encode_labels(metadata, rows, classes, multi_label, 'test')
    caps = class_captions(task_def.name, classes, templates, captions, prepared.work_root)
    texts, owner = caps.flat()
    route = text_route(source.model(), str(cfg.path))
    if route == 'cosine' and caption_pool is not None:
        raise EvarError(f'--caption_pool applies to the likelihood route; {cfg.path} has a joint audio-text space, '
                        'whose class embedding is the mean of its captions\' embeddings (EVAR\'s prompt ensemble).')
    pool = None if route == 'cosine' else caption_pool or 'max'
    settings = {**common_settings(prepared, unit_sec), 'mode': 'zeroshot', 'route': route,
                'captions': [list(group) for group in caps.captions],
                **({'caption_pool': pool} if pool is not None else {})}
    run_id = settings_id(settings)
    task_name = f'zs_{task_def.name}'
    log_dir = Path(logs_dir) / f'{cfg.name}-{task_name}-{run_id}'
    setup_logging(log_dir)
    log.info(f'zero-shot {cfg.name} ({cfg.audio_repr}) on {task_def.name}: {len(rows)} test clips over folds '
             f'{prepared.folds}, {len(classes)} classes, {len(texts)} captions ({caps.source}), route {route}'
             + (f', {pool} over each class\'s captions' if pool else ''))
    log.info(f'captions: {texts[:3]} ...')
    try:
        if route == 'cosine':
            embeddings = embed_task(prepared, recompute=recompute)
            by_fold = [np.asarray(embeddings[f])[metadata.split_indices(f)['test']] for f in prepared.folds]
            class_embs = ensemble_embeddings(text_embeddings(source, texts, recompute), owner, len(classes))
            scores = cosine_scores(np.concatenate(by_fold), class_embs)
        else:
            scores = likelihood_scores(source, rows, texts, owner, len(classes), pool)
        value = metric_score(task_def.metric, targets, scores)
        log.info(f'{task_name}: {task_def.metric} {value:.5f}')
        write_predictions(log_dir / 'predictions.csv', metadata, rows, classes, scores, targets,
                          score_name='cosine' if route == 'cosine' else 'log_likelihood')
        write_csv(log_dir / 'captions.csv', ['class', 'caption'],
                  [(c, t) for c, group in zip(classes, caps.captions) for t in group])
        _record(prepared, task_name, value, route, run_id, settings, Path(results_dir), log_dir,
                time.perf_counter() - t_start)
    except BaseException as e:  # the log folder keeps the reason a run ended
        logging.getLogger('evar.runlog').error(f'run failed ({type(e).__name__}) {e}')
        raise
    return ZeroShotResult(score=value, metric=task_def.metric, route=route, rows=rows, scores=scores,
                          targets=targets, classes=classes, log_dir=log_dir)


def _record(prepared, task_name: str, value: float, route: str, run_id: str, settings: dict, results_dir: Path,
            log_dir: Path, elapsed: float) -> None:
    """Appends the run's `ResultRow` to results_dir/scores.csv."""
    from ..results import ResultRow, append_rows

    cfg = prepared.cfg
    row = ResultRow(representation=cfg.name, task=task_name, score=value, run_id=run_id, metric=prepared.task.metric,
                    mode='zeroshot', head=route, config_hash=cfg.model_hash()[:16],
                    weight_hash=prepared.source.weight_digest(), elapsed_sec=elapsed,
                    timestamp=time.strftime('%Y-%m-%dT%H:%M:%S'),
                    settings=json.dumps(settings, sort_keys=True, default=str, separators=(',', ':')),
                    report=f'Zero-shot evaluation: {cfg.name} {task_name} -> {value:.5f} ({route}'
                           + (f', {settings["caption_pool"]} over captions' if 'caption_pool' in settings else '')
                           + f'); config {cfg.path}; '
                           f'log {log_dir}')
    append_rows(results_dir / 'scores.csv', [row])
    log.info(f'-> {results_dir / "scores.csv"}')


def zeroshot_command(config_file: str, task: str, options: str = '', templates=(), captions: Optional[str] = None,
                     unit_sec: Optional[float] = None, work_root: Optional[str] = None, results_dir: str = 'results',
                     logs_dir: str = 'logs', device: Optional[str] = None, bf16: bool = False, progress: bool = True,
                     recompute: bool = False, caption_pool: Optional[str] = None) -> None:
    """Zero-shot classification of TASK with the audio-text model of CONFIG_FILE (EVAR's zeroshot.py): each clip
    is scored against a caption per class (cosine similarity in the joint space, or caption likelihood), accuracy
    or mAP over every fold's test clips, appended to results/scores.csv as task zs_TASK.

    Args:
        config_file: model YAML with a text side (e.g. config/clap_htsat_unfused.yaml).
        task: a built-in task name or a task YAML.
        options: config overrides 'key=value,+new_key=value'.
        templates: caption template(s) with {} for the class name, e.g. "the sound of {}" or
            "['the sound of {}', '{} can be heard']" (several: a prompt ensemble); default EVAR's rules.
        captions: a captions YAML, class label -> caption or list of captions (overrides templates).
        unit_sec, work_root, results_dir, logs_dir, device, bf16, progress, recompute: as `evar linear`.
        caption_pool: likelihood route only: 'max' (default; a class is as likely as its best caption) or 'mean'.
    """
    zeroshot(config_file, task, options=options, templates=templates, captions=None if captions is None
             else Path(captions), unit_sec=unit_sec, work_root=work_root, results_dir=Path(results_dir),
             logs_dir=Path(logs_dir), device=device, bf16=bf16, progress=progress, recompute=recompute,
             caption_pool=caption_pool)
