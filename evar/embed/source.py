"""The one path from a task's audio to cached embeddings, used by every evaluation mode.

`TaskEmbeddings` knows a model config, a task and its metadata, and hands out the task's clip embeddings [N, D]
(or frame embeddings) for a fold: from the content-addressed cache when the same model, weights, metadata, audio
folder, unit length, crop, normalisation scope and dtype were embedded before, else computed and cached.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import EvarError

log = logging.getLogger('evar')
# How clips are decoded and resampled; part of the cache key (change it when the reader's output changes).
AUDIO_READER = 'dr_flac/libsndfile, mono mean, soxr HQ'


def pick_device(device: Optional[str] = None) -> str:
    """`device`, or 'cuda' when torch sees a GPU, else 'cpu'.

    Raises:
        EvarError: a device torch does not know, or a CUDA device that this torch cannot use.
    """
    import torch

    if device is None:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        parsed = torch.device(str(device))
    except RuntimeError as e:
        raise EvarError(f'--device {device!r} is not a torch device (cpu, cuda, cuda:1, ...): {e}') from None
    if parsed.type == 'cuda':
        if not torch.cuda.is_available():
            raise EvarError(f'--device {device}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu, '
                            'or install a CUDA build of torch on a machine with a GPU.')
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise EvarError(f'--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible.')
    elif parsed.type != 'cpu':
        raise EvarError(f'--device {device}: evar runs on cpu or cuda devices.')
    return str(device)


@dataclass
class TaskEmbeddings:
    """Everything needed to get a task's embeddings; build one per run.

    Attributes:
        cfg: the model config (`evar.config.ModelConfig`).
        task: the task record (`evar.tasks.Task`).
        metadata: the task's rows (`evar.data.Metadata`).
        work_root: the folder holding `cache/` and the task's audio.
        device: 'cpu' or 'cuda[:i]'.
        bf16: bf16 autocast for the network on GPU.
        progress: show progress bars.
    """
    cfg: object
    task: object
    metadata: object
    work_root: Path
    device: str
    bf16: bool = False
    progress: bool = True
    _model: object = None
    _weights: Optional[list] = None
    _paths: Optional[list] = None
    _warned: set = field(default_factory=set)

    @property
    def sample_rate(self) -> int:
        """The model's input rate in Hz."""
        return int(self.cfg.params.sample_rate)

    @property
    def extract_batch_size(self) -> int:
        """Clips per forward pass: the config's extract_batch_size, else batch_size on GPU and 16 on CPU."""
        return self.cfg.run.extract_batch_size or (self.cfg.run.batch_size if self.device.startswith('cuda') else 16)

    def data_root(self) -> tuple:
        """(audio folder, the sample rate its folder name declares or None).

        Raises:
            EvarError: the folder does not exist, saying how to build it.
        """
        root, rate = self.task.data_root(self.work_root, self.sample_rate)
        if not root.is_dir():
            raise EvarError(f'Audio folder {root} for task {self.task.name} does not exist. Build it with '
                            f'`python -m evar.metadata {self.task.name} <dataset_root>` (links the dataset) or '
                            f'`python prepare_wav.py <dataset_root> {root} {self.sample_rate}`.')
        return root, rate

    def audio_paths(self) -> list:
        """The resolved audio file of every metadata row, in order (memoised).

        Raises:
            EvarError: files that do not exist, all listed in one message.
        """
        if self._paths is None:
            from ..audio import resolve_audio_path

            root, _ = self.data_root()
            paths, missing = [], []
            for name in self.metadata.file_names:
                try:
                    paths.append(resolve_audio_path(root, name))
                except EvarError as e:
                    missing.append(str(e))
            if missing:
                raise EvarError(f'{len(missing)} of the {len(self.metadata)} audio files of task {self.task.name} are '
                                'missing:\n  ' + '\n  '.join(missing[:20]) + ('\n  ...' if len(missing) > 20 else ''))
            self._paths = paths
        return self._paths

    def check_audio_files(self) -> None:
        """One quick pass over every file's size and header before anything is embedded.

        Raises:
            EvarError: every missing, empty or unreadable file, listed in one message.
        """
        from ..audio import audio_file_fault

        faults = [(p, audio_file_fault(p)) for p in self.audio_paths()]
        faults = [f'{p}: {fault}' for p, fault in faults if fault]
        if faults:
            raise EvarError(f'{len(faults)} audio file(s) of task {self.task.name} cannot be read:\n  '
                            + '\n  '.join(faults[:20]) + ('\n  ...' if len(faults) > 20 else ''))

    def audio_fingerprint(self) -> str:
        """sha256 over each file's name as listed, the name found on disk, its size and modification time: audio
        replaced in place, or another folder's files under the same names, changes the cache key."""
        root, _ = self.data_root()
        digest = hashlib.sha256()
        for name, path in zip(self.metadata.file_names, self.audio_paths()):
            st = path.stat()
            digest.update(f'{name}\0{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
        return digest.hexdigest()

    def weight_hashes(self) -> list:
        """sha256 of each weight file the model reads (memoised per path, size and mtime under cache/)."""
        from ..models import model_class
        from .cache import weight_hash

        if self._weights is None:
            paths = model_class(self.cfg.audio_repr).weight_paths(self.cfg.params)
            if any(not p.is_file() for p in paths):
                self.model()  # the model's own loader gives the message saying where to get the file
            memo = self.work_root / 'cache' / 'weight-hashes'
            self._weights = [weight_hash(p, memo) for p in paths]
        return self._weights

    def weight_digest(self) -> str:
        """One 16-hex-digit digest of all weight files ('' for a model without weights)."""
        hashes = self.weight_hashes()
        return hashlib.sha256(';'.join(hashes).encode()).hexdigest()[:16] if hashes else ''

    def model(self):
        """The model, built once and moved to the device."""
        if self._model is None:
            from ..models import create_model

            log.info(f'building model {self.cfg.audio_repr} from {self.cfg.path}')
            self._model = create_model(self.cfg.audio_repr, self.cfg.params).to(self.device)
        return self._model

    def stats_scope(self, fold: int) -> Optional[str]:
        """Which training rows the normalisation statistics come from, or None when embeddings don't depend on it."""
        from ..models import model_class

        if not model_class(self.cfg.audio_repr).uses_task_stats(self.cfg.params):
            return None
        return f'fold{fold}' if self.task.folds > 1 else 'train'

    def key_fields(self, scope: Optional[str], level: str = 'clip') -> dict:
        """What the embeddings depend on; hashed into the cache key (no absolute path enters it)."""
        from ..models import model_class

        root, rate = self.data_root()
        params = {k: v for k, v in self.cfg.model_params.items() if k not in ('weight_file', 'feature_d')}
        fields = {'audio_repr': self.cfg.audio_repr, 'model_version': model_class(self.cfg.audio_repr).cache_version,
                  'params': params, 'weights': self.weight_hashes(),
                  'metadata_sha256': self.metadata.content_hash, 'data_folder': self.task.folder,
                  'source_rate': rate, 'unit_sec': self.task.unit_sec, 'crop': self.cfg.run.crop,
                  'norm_stats_scope': scope, 'dtype': self.cfg.run.cache_dtype,
                  'audio': self.audio_fingerprint(), 'reader': AUDIO_READER}
        if self.task.data is not None:  # a user task's own folder (built-in tasks live under the work root)
            fields['data_root'] = str(root.resolve())
        if level != 'clip':  # clip keys stay as they were before frame embeddings existed
            fields['level'] = level
        return fields

    def protocol(self):
        """The `EvarProtocol` the run settings ask for, or None (the default: evar's own crops, masks, statistics)."""
        from .protocol import EvarProtocol

        return EvarProtocol.from_run(self.cfg.run)

    def protocol_fields(self, fold: int, scope: Optional[str]) -> dict:
        """Cache-key fields of the EVAR protocol ({} when it is off, so keys stay as they were before it existed):
        its parts and seeds, and the fold where random crops depend on it (a k-fold task's test fold keeps heads)."""
        protocol = self.protocol()
        if protocol is None:
            return {}
        fields = protocol.key(with_stats=scope is not None)
        if protocol.random_crop and self.task.folds > 1:
            fields['crop_fold'] = fold
        return {'evar_protocol': fields}

    def embeddings(self, fold: int, train_rows: np.ndarray, allow_compute: bool = True, level: str = 'clip',
                   recompute: bool = False):
        """The task's embeddings for `fold`: float32/float16 [N, D] clip embeddings in metadata row order, or a
        `FrameEmbeddings` when `level` is 'frame'.

        Args:
            fold: the test fold (it selects the training rows of the normalisation statistics, where those
                matter).
            train_rows: metadata rows whose audio may set normalisation statistics.
            allow_compute: False raises EvarError when the cache has no entry (EVAR's 2pass_2_train_test).
            level: 'clip' or 'frame'.
            recompute: ignore a cached entry and overwrite it.
        """
        from .cache import EmbeddingCache, cache_key

        scope = self.stats_scope(fold)
        fields = {**self.key_fields(scope, level), **self.protocol_fields(fold, scope)}
        key = cache_key(fields)
        cache = EmbeddingCache(self.work_root / 'cache')
        cached = None if recompute else cache.load(key, level)
        if cached is not None and len(cached) == len(self.metadata):
            log.info(f'using cached embeddings {cache.path(key, level).name}')
            return cached
        if not allow_compute:
            raise EvarError(f'No cached embeddings for {self.cfg.path} on task {self.task.name} (key {key}); run '
                            'with --step=2pass_1_precompute_only first.')
        embs = self.compute(train_rows if scope else np.arange(0), level, fold)
        self._refuse_non_finite(embs)
        from ..fileio import remove_stale_temporaries

        for tmp in remove_stale_temporaries(cache.root):
            log.info(f'removed {tmp.name}, a partial cache file left by an interrupted run')
        if self.cfg.run.cache_dtype == 'float16':
            if level == 'clip':
                embs = embs.astype(np.float16)
            else:
                embs.values = embs.values.astype(np.float16)
        cache.save(key, embs, {**fields, 'config': str(self.cfg.path), 'task': self.task.name})
        log.info(f'saved {level} embeddings of {len(self.metadata)} clips to {cache.path(key, level)}')
        return embs

    def _refuse_non_finite(self, embs) -> None:
        """EvarError naming the clips whose embeddings hold NaN or inf (checked before caching or training)."""
        if isinstance(embs, np.ndarray):
            bad = np.flatnonzero(~np.isfinite(embs).all(axis=1))
        else:
            finite_frames = np.isfinite(embs.values).all(axis=1)
            bad = np.unique(np.searchsorted(embs.offsets, np.flatnonzero(~finite_frames), side='right') - 1)
        if len(bad):
            names = [self.metadata.file_names[i] for i in bad[:10]]
            raise EvarError(f'{self.cfg.path}: the model gave NaN or infinite embeddings for {len(bad)} of '
                            f'{len(self.metadata)} clips of task {self.task.name}, e.g. {names}; nothing was cached. '
                            'Check the model on silent or very short clips (python -m evar.check).')

    def compute(self, train_rows: np.ndarray, level: str = 'clip', fold: int = 1):
        """Embeds every clip (no cache); normalisation statistics, when the model needs them, from `train_rows`.
        With the EVAR protocol on, `fold` says which rows are test rows (head-cropped) and which EVAR crops at
        random."""
        from ..data import ClipDataset
        from .extract import ExtractSettings, extract_embeddings

        root, _ = self.data_root()
        model = self.model()
        if train_rows.size:
            model.reset_norm_stats()  # per fold: statistics of this fold's training rows
        protocol = self.protocol()
        args = (root, self.metadata.file_names, self.sample_rate, self.task.unit_sec, self.cfg.run.crop)
        if protocol is None:
            dataset = ClipDataset(*args)
        else:
            from .protocol import ProtocolClipDataset

            random_rows = np.ones(len(self.metadata), dtype=bool)
            random_rows[self.metadata.split_indices(fold)['test']] = False
            dataset = ProtocolClipDataset(*args, protocol=protocol, random_rows=random_rows)
            log.info(f'EVAR protocol: {", ".join(protocol.key(with_stats=True)["parts"])}')
        settings = ExtractSettings(batch_size=self.extract_batch_size, num_workers=self.cfg.run.num_workers,
                                   device=self.device, bf16=self.bf16, progress=self.progress)
        t0 = time.perf_counter()
        embs = extract_embeddings(model, dataset, train_rows, settings, self._warned, level=level, protocol=protocol)
        log.info(f'embedded {len(dataset)} clips in {time.perf_counter() - t0:.1f}s')
        return embs
