"""Captions for zero-shot classification: the text(s) each class is scored against.

EVAR's rules (zeroshot.py's `class_to_caption`) are the default: a class's name, `_` replaced by a space, followed
by " can be heard", where the name is
- CREMA-D (`cremad`): the emotion code's phrase ('ANG' -> 'angry person talking', ...);
- GTZAN (`gtzan`): '<genre> music';
- NSynth (`nsynth`): 'the musical instrument sound of <family>';
- AudioSet (`as`, `as20k`): the class's display name in the ontology's `class_labels_indices.csv` (labels are mids);
- FSD50K (`fsd50k`): the AudioSet display name of its label (matched by name; the label itself when none matches);
- any other task: the label.

Instead, templates (`'the sound of {}'`; `{}` receives the class's name as above, without " can be heard") or a
captions YAML (class label -> a caption or a list of captions) give the captions. Several captions for one class
form a prompt ensemble: the class's text embedding is the mean of their L2-normalised embeddings, re-normalised
(`ensemble_embeddings`).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Optional, Sequence

import numpy as np

from .errors import EvarError

CREMAD_PHRASES = MappingProxyType({
    'ANG': 'angry person talking', 'DIS': 'someone talking in disgust', 'FEA': 'someone talking with a sense of fear',
    'HAP': 'someone talking happily and joyfully', 'NEU': 'someone talking calmly', 'SAD': 'someone talking sadly'})
EVAR_SUFFIX = ' can be heard'
ONTOLOGY_FILE = 'class_labels_indices.csv'
ONTOLOGY_URL = 'http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv'
ONTOLOGY_TASKS = ('as', 'as20k', 'fsd50k')


@dataclass(frozen=True)
class ClassCaptions:
    """The captions of each class of a task.

    Attributes:
        classes: the class labels as the metadata writes them, in score-column order.
        captions: per class, one or more captions (several form a prompt ensemble); same order as `classes`.
        source: where they came from ('EVAR rules', 'templates', or the captions file), for logs and results.
    """
    classes: tuple
    captions: tuple  # tuple of tuples of str
    source: str

    def flat(self) -> tuple:
        """(every caption in class order [M], the class index of each [M] int64)."""
        texts = tuple(c for group in self.captions for c in group)
        owner = np.repeat(np.arange(len(self.captions)), [len(g) for g in self.captions])
        return texts, owner.astype(np.int64)


def _ontology_key(name: str) -> str:
    """A display name or FSD50K label reduced to its letters without 'and' (so 'Accelerating, revving, vroom' and
    'Accelerating_and_revving_and_vroom' meet)."""
    return re.sub(r'[^a-z]', '', re.sub(r'\band\b', '', name.lower().replace('_', ' ')))


def find_ontology(work_root: Optional[Path]) -> Optional[Path]:
    """`class_labels_indices.csv` under `<work_root>/metadata/`, else in the current folder (EVAR's place)."""
    for folder in ([Path(work_root) / 'metadata'] if work_root is not None else []) + [Path('.')]:
        if (folder / ONTOLOGY_FILE).is_file():
            return folder / ONTOLOGY_FILE
    return None


def read_ontology(path: Path) -> dict:
    """mid -> display name from AudioSet's `class_labels_indices.csv` (columns index,mid,display_name).

    Raises:
        EvarError: the file lacks those columns.
    """
    with open(path, newline='', encoding='utf-8-sig') as f:
        reader = csv.DictReader(f)
        if not {'mid', 'display_name'} <= set(reader.fieldnames or []):
            raise EvarError(f'{path}: expected AudioSet\'s {ONTOLOGY_FILE} with columns index,mid,display_name, '
                            f'found {reader.fieldnames}.')
        return {row['mid'].strip(): row['display_name'].strip() for row in reader}


def class_name(task: str, label: str, ontology: Optional[dict] = None) -> str:
    """The readable name of class `label` of `task` that captions use (see the module docstring), `_` kept.

    Raises:
        EvarError: an AudioSet mid missing from the ontology, or a CREMA-D code that is not one of EVAR's six.
    """
    if task == 'cremad':
        if label not in CREMAD_PHRASES:
            raise EvarError(f'cremad: label {label!r} is not one of the emotion codes {list(CREMAD_PHRASES)}.')
        return CREMAD_PHRASES[label]
    if task == 'gtzan':
        return f'{label} music'
    if task == 'nsynth':
        return f'the musical instrument sound of {label}'
    if task in ('as', 'as20k'):
        if ontology is None or label not in ontology:
            raise EvarError(f'{task}: mid {label!r} has no display name in {ONTOLOGY_FILE} ({ONTOLOGY_URL}).')
        return ontology[label]
    if task == 'fsd50k' and ontology:
        by_key = {_ontology_key(name): name for name in ontology.values()}
        return by_key.get(_ontology_key(label), label)
    return label


def evar_caption(task: str, label: str, ontology: Optional[dict] = None) -> str:
    """EVAR's default caption of class `label` of `task`: its `class_name` with `_` -> space + ' can be heard'."""
    return class_name(task, label, ontology).replace('_', ' ') + EVAR_SUFFIX


def parse_templates(templates) -> tuple:
    """Templates from the command line: one string or a list of strings, each with one `{}` for the class name.

    Raises:
        EvarError: not strings, or a template without exactly one `{}`.
    """
    if templates is None or templates == ():
        return ()
    items = [templates] if isinstance(templates, str) else list(templates)
    for t in items:
        if not isinstance(t, str) or t.count('{}') != 1:
            raise EvarError(f'--templates: each template must be text with exactly one {{}} for the class name, such '
                            f"as 'the sound of {{}}'; got {t!r}.")
    return tuple(items)


def read_captions_file(path: Path, classes: Sequence[str]) -> dict:
    """class label -> tuple of captions from a captions YAML (a mapping label -> caption or list of captions).

    Raises:
        EvarError: a missing or malformed file, a value that is not text or a list of text, or classes of the task
            the file does not caption (all named in one message).
    """
    from .params import read_yaml_mapping

    path = Path(path)
    if not path.is_file():
        raise EvarError(f'Captions file {path} does not exist (expected a YAML mapping class label -> caption or '
                        'list of captions).')
    spec = read_yaml_mapping(path, 'Captions file')
    out = {}
    for label, value in spec.items():
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(c, str) and c.strip() for c in items):
            raise EvarError(f'Captions file {path}: class {label!r} must map to a caption or a non-empty list of '
                            f'captions, got {value!r}.')
        out[str(label)] = tuple(c.strip() for c in items)
    missing = [c for c in classes if c not in out]
    if missing:
        raise EvarError(f'Captions file {path} has no caption for {len(missing)} class(es) of the task: {missing[:20]}'
                        f'{" ..." if len(missing) > 20 else ""}.')
    return out


def class_captions(task: str, classes: Sequence[str], templates=(), captions_file: Optional[Path] = None,
                   work_root: Optional[Path] = None) -> ClassCaptions:
    """The captions of every class: from `captions_file` when given, else `templates` applied to each class's name,
    else EVAR's rules.

    Args:
        task: the task's name (selects EVAR's rule).
        classes: the class labels, in score-column order.
        templates: strings with one `{}`, or () for EVAR's rule.
        captions_file: a captions YAML (overrides templates).
        work_root: where `metadata/class_labels_indices.csv` is looked for (AudioSet, FSD50K).

    Raises:
        EvarError: bad templates or captions file, or an AudioSet task without the ontology file.
    """
    templates = parse_templates(templates)
    if captions_file is not None:
        given = read_captions_file(captions_file, classes)
        return ClassCaptions(tuple(classes), tuple(given[c] for c in classes), str(captions_file))
    ontology = None
    if task in ONTOLOGY_TASKS:
        path = find_ontology(work_root)
        if path is None and task != 'fsd50k':
            raise EvarError(f'{task}: zero-shot captions need AudioSet\'s {ONTOLOGY_FILE} (display names of the mids); '
                            f'download it from {ONTOLOGY_URL} into {Path(work_root or ".") / "metadata"} or the current '
                            'folder, or give --captions.')
        ontology = read_ontology(path) if path is not None else None
    if templates:
        names = [class_name(task, c, ontology).replace('_', ' ') for c in classes]
        return ClassCaptions(tuple(classes), tuple(tuple(t.format(n) for t in templates) for n in names), 'templates')
    return ClassCaptions(tuple(classes), tuple((evar_caption(task, c, ontology),) for c in classes), 'EVAR rules')


def ensemble_embeddings(text_embs: np.ndarray, owner: np.ndarray, n_classes: int) -> np.ndarray:
    """Class embeddings [C, D] from caption embeddings [M, D] owned by classes `owner` [M]: each caption
    L2-normalised, averaged per class, re-normalised (a prompt ensemble; one caption a class gives it unchanged up
    to normalisation)."""
    x = np.asarray(text_embs, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    sums = np.zeros((n_classes, x.shape[1]))
    np.add.at(sums, owner, x)
    return sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(min=1e-12)


def text_embeddings(source, texts: Sequence[str], recompute: bool = False, batch_size: int = 64) -> np.ndarray:
    """The model's `encode_text` embeddings float32 [len(texts), D] of `texts`, from the embedding cache when the
    same model content (audio_repr, code version, parameters, weight files' content) embedded the same texts
    before, else computed `batch_size` at a time under inference mode and cached (`<work_root>/cache/embs-<key>.npy`
    with its `.json`).

    Args:
        source: the run's `evar.embed.source.TaskEmbeddings` (model, config, weights, work root).
        texts: the captions, in order.
        recompute: ignore a cached entry and overwrite it.
    """
    import hashlib
    import json
    import logging

    import torch

    from .embed.cache import EmbeddingCache, cache_key
    from .models import model_class

    cfg = source.cfg
    fields = {'kind': 'text', 'audio_repr': cfg.audio_repr, 'model_version': model_class(cfg.audio_repr).cache_version,
              'params': {k: v for k, v in cfg.model_params.items() if k not in ('weight_file', 'feature_d')},
              'weights': source.weight_hashes(),
              'texts_sha256': hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()}
    key = cache_key(fields)
    cache = EmbeddingCache(source.work_root / 'cache')
    cached = None if recompute else cache.load(key)
    if cached is not None and len(cached) == len(texts):
        logging.getLogger('evar').info(f'using cached text embeddings {cache.path(key).name}')
        return np.asarray(cached, dtype=np.float32)
    model = source.model().eval()
    with torch.inference_mode():
        parts = [model.encode_text(list(texts[i:i + batch_size])).float().cpu().numpy()
                 for i in range(0, len(texts), batch_size)]
    embs = np.concatenate(parts).astype(np.float32)
    if not np.isfinite(embs).all():
        raise EvarError(f'{cfg.path}: encode_text gave NaN or infinite embeddings; nothing was cached.')
    cache.save(key, embs, {**fields, 'config': str(cfg.path), 'texts': len(texts)})
    return embs
