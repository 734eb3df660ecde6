"""Benchmark runs (`evar bench`): many models x tasks x heads, in parallel processes, resumable, on this machine or on a
SLURM cluster through submitit.

    evar bench plan.yaml [--jobs N] [--dry_run] [--retry_failed] [--executor local|slurm|submitit_local]
    evar bench --models config/a.yaml,config/b.yaml --tasks esc50,fsdd --heads probe,logreg,knn [--seeds 42,43]

A plan (YAML; every key is checked, an unknown one is an error naming it and the file):

    name: my-bench             # optional: the plan file's stem
    models:                    # model YAMLs, each a path or {config: path, options: 'key=value,...'}
      - config/byola_d512.yaml
      - {config: config/melspec.yaml, options: 'name=melspec_b16,batch_size=16'}
    tasks: [esc50, fsdd, tasks/my_task.yaml]    # built-in names or task YAMLs
    heads: [probe, logreg, knn, finetune]       # BENCH_MODES keys (also mlp_search, and zeroshot for audio-text models)
    seeds: [42, 43, 44]        # optional: [42]
    flags:                     # optional: each head's flags, as on its command line
      probe: {hidden: '(512,)'}
      finetune: {epochs: 50, lr: 0.05}
    unit_sec: null             # optional: every job's clip length (default: each task's)
    device: null               # optional: cpu | cuda (default: cuda when available)
    work_root: work            # optional: $EVAR_WORK or work
    results_dir: results       # optional
    logs_dir: logs             # optional: evar's per-run log folders

Relative paths are read relative to the current folder, as on any evar command line.

Jobs. A job is one command a user could run: `evar embed CONFIG TASK` once per model x task (filling the embedding
cache), then `evar linear CONFIG TASK --head H --seed S` per frozen head and seed, which read that cache, and
`evar finetune CONFIG TASK --seed S` per seed. A *unit* is what one process runs: a model x task pair's embedding job
followed by its frozen-head jobs (one after the other, on the same cache), or one fine-tuning job. Units run in
parallel: `--jobs N` processes here (each with cores // N torch/OpenMP threads and, on GPU machines, its own visible
GPU through CUDA_VISIBLE_DEVICES), or one SLURM array task each. A fine-tuning unit that asks for several GPUs
(`--gpus_per_job`) runs under torchrun.

Resume rule (exact). Before anything runs, the bench computes each job's run id with the same functions the mode
uses (`evar.modes.linear.run_settings` / `evar.modes.finetune.run_settings` and `settings_id`: the id hashes the
model's parameters, the content of its weight files, the run settings, the task's metadata content, clip length,
folds and the head's hyper-parameters, not the seed). A job is done when its results file has a single-seed row
(`runs` 1) with the same representation, task, mode, seed and run id. After a job has run, the bench checks that
this row is there; if the mode wrote another id, the job is reported failed (so a resume never reruns or skips on a
guess). A mode without an id function (`BenchMode.run_id` empty) matches on representation, task, mode, seed,
config hash and weight hash instead. A job whose id cannot be computed (a missing weight file, metadata not yet
built) is run and its error reported.

Everything lives under `<work_root>/bench/<plan name>/`: `logs/<job>.log` (the job's stdout and stderr, starting
with its command line), `status/<job>.json` (done or failed, exit status, the error line), `units/` (what each
process ran) and `submitit/`. A killed bench resumes where it stopped: finished jobs (their rows are in the results
files) are skipped and their logs left alone; a job killed half-way runs again. Jobs that failed in an earlier run
are reported and not run again unless `--retry_failed`. One failing job never stops the others; the run ends with a
table of failures and exit status 1 when any job failed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Optional, Union

from .errors import EvarError


@dataclass(frozen=True)
class BenchMode:
    """How the bench runs one kind of head.

    Attributes:
        command: the `evar` subcommand (a key of `evar.cli.COMMANDS`) that runs a job.
        row_mode: the `mode` column of the rows it writes.
        results_file: the file under the results folder its rows go to.
        frozen: True when it reads the embedding cache (it runs after the pair's `evar embed` job, in its unit).
        flags: flags the bench always passes (e.g. (('head', 'knn'),)).
        run_id: 'module:function' computing the run id before the run, `function(prepared, kwargs) -> str` with the
            `PreparedRun` of the model x task and the command's keyword arguments; '' matches rows on hashes instead.
        seeded: True when the command takes --seed (one job per seed); else one job per model x task, row seed ''.
        row_task: the `task` column of its rows, from the task's name (zero-shot writes 'zs_{task}').
    """
    command: str
    row_mode: str
    results_file: str
    frozen: bool
    flags: tuple = ()
    run_id: str = ''
    seeded: bool = True
    row_task: str = '{task}'


# The registry: a plan's head name -> how it runs. A new mode is one line here.
BENCH_MODES = MappingProxyType({
    'probe': BenchMode('linear', 'linear', 'scores.csv', True, (('head', 'probe'),), 'evar.bench:linear_run_id'),
    'logreg': BenchMode('linear', 'linear', 'scores.csv', True, (('head', 'logreg'),), 'evar.bench:linear_run_id'),
    'knn': BenchMode('linear', 'knn', 'scores.csv', True, (('head', 'knn'),), 'evar.bench:linear_run_id'),
    'mlp_search': BenchMode('linear', 'linear', 'scores.csv', True, (('head', 'mlp_search'),),
                            'evar.bench:linear_run_id'),
    'finetune': BenchMode('finetune', 'finetune', 'ft-scores.csv', False, (), 'evar.bench:finetune_run_id'),
    'zeroshot': BenchMode('zeroshot', 'zeroshot', 'scores.csv', False, seeded=False, row_task='zs_{task}'),
})

# Flags the bench sets itself on every job (a plan's `flags` may not set them).
BENCH_SET_FLAGS = ('config_file', 'task', 'options', 'seed', 'repeat', 'step', 'head', 'work_root', 'results_dir',
                   'logs_dir', 'device', 'progress', 'unit_sec', 'eval_only')
EXECUTORS = ('local', 'slurm', 'submitit_local')
PLAN_KEYS = ('name', 'models', 'tasks', 'heads', 'seeds', 'flags', 'unit_sec', 'device', 'work_root', 'results_dir',
             'logs_dir')


# --- the plan ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelEntry:
    """One model of a plan: its YAML and the `--options` overrides ('' for none)."""
    config: str
    options: str = ''


@dataclass(frozen=True)
class Plan:
    """What a bench runs: every model x task x head x seed.

    Attributes:
        name: the plan's name (its folder under <work_root>/bench/).
        models: `ModelEntry`s.
        tasks: built-in task names or task YAML paths.
        heads: keys of BENCH_MODES.
        seeds: the seeds; each head runs once per seed.
        flags: head -> {flag: value} passed to that head's command.
        unit_sec: clip length in seconds for every job, or None for each task's own.
        device: 'cpu', 'cuda' or None (cuda when available).
        work_root: metadata, audio, cache and bench folder (None: $EVAR_WORK or work).
        results_dir, logs_dir: where the modes write scores and their run logs.
        source: where the plan came from (a file, or 'the command line'), for error messages.
    """
    name: str
    models: tuple
    tasks: tuple
    heads: tuple
    seeds: tuple = (42,)
    flags: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    unit_sec: Optional[float] = None
    device: Optional[str] = None
    work_root: Optional[str] = None
    results_dir: str = 'results'
    logs_dir: str = 'logs'
    source: str = 'the command line'

    def bench_dir(self) -> Path:
        """<work_root>/bench/<name>: the bench's logs, status files and unit files."""
        from .paths import default_work_root

        root = Path(self.work_root) if self.work_root is not None else default_work_root()
        return root / 'bench' / self.name


def _as_list(value, key: str, source: str) -> list:
    """A YAML list, or a comma-separated string, as a list; EvarError naming `key` otherwise."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(',') if v.strip()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise EvarError(f'{source}: `{key}` must be a non-empty list, got {value!r}.')
    return list(value)


def make_plan(values: dict, source: str, default_name: str) -> Plan:
    """A checked `Plan` from a mapping of PLAN_KEYS (a plan file's content, or the command line's lists).

    Checks keys and value types, that each head is registered, each task known, each model YAML loads, model names
    are distinct and each head's flags are flags of its command; nothing is embedded or trained.

    Raises:
        EvarError: the first problem, naming `source` and the key.
    """
    from .config import load_config
    from .tasks import get_task

    unknown = sorted(set(values) - set(PLAN_KEYS))
    if unknown:
        raise EvarError(f'{source}: unknown key(s) {unknown}; valid keys: {", ".join(PLAN_KEYS)}.')
    for key in ('models', 'tasks', 'heads'):
        if values.get(key) in (None, '', []):
            raise EvarError(f'{source}: `{key}` is missing (a list of {key}).')
    models = []
    for i, entry in enumerate(_as_list(values['models'], 'models', source)):
        if isinstance(entry, str):
            entry = {'config': entry}
        if not isinstance(entry, dict) or 'config' not in entry or set(entry) - {'config', 'options'}:
            raise EvarError(f'{source}: models[{i}] must be a config path or {{config: path, options: "k=v,..."}}, '
                            f'got {entry!r}.')
        models.append(ModelEntry(str(entry['config']), str(entry.get('options') or '')))
    names = {}
    for i, m in enumerate(models):
        try:
            cfg = load_config(m.config, m.options)
        except EvarError as e:
            raise EvarError(f'{source}: models[{i}]: {e}') from None
        if cfg.name in names:
            raise EvarError(f'{source}: models {names[cfg.name]} and {m.config} are both named {cfg.name!r}; '
                            "give one another name with options 'name=...'.")
        names[cfg.name] = m.config
    tasks = [str(t) for t in _as_list(values['tasks'], 'tasks', source)]
    for i, t in enumerate(tasks):
        try:
            get_task(t)
        except EvarError as e:
            raise EvarError(f'{source}: tasks[{i}]: {e}') from None
    heads = [str(h) for h in _as_list(values['heads'], 'heads', source)]
    for h in heads:
        if h not in BENCH_MODES:
            raise EvarError(f'{source}: unknown head {h!r} in `heads`; registered: {", ".join(BENCH_MODES)}.')
    seeds = _as_list(values.get('seeds', [42]), 'seeds', source)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise EvarError(f'{source}: `seeds` must be integers, got {seeds!r}.')
    if len(set(seeds)) != len(seeds) or len(set(tasks)) != len(tasks) or len(set(heads)) != len(heads):
        raise EvarError(f'{source}: `seeds`, `tasks` and `heads` must not repeat an entry.')
    flags = values.get('flags') or {}
    if not isinstance(flags, dict):
        raise EvarError(f'{source}: `flags` must map a head to its flags, got {flags!r}.')
    for head, head_flags in flags.items():
        if head not in heads:
            raise EvarError(f'{source}: flags for {head!r}, which is not in `heads` {heads}.')
        if not isinstance(head_flags, dict):
            raise EvarError(f'{source}: flags.{head} must be a mapping flag -> value, got {head_flags!r}.')
        _check_flags(head, head_flags, source)
    device = values.get('device')
    if device not in (None, 'cpu', 'cuda'):
        raise EvarError(f'{source}: `device` must be cpu or cuda, got {device!r}.')
    unit_sec = values.get('unit_sec')
    if unit_sec is not None and (isinstance(unit_sec, bool) or not isinstance(unit_sec, (int, float)) or unit_sec <= 0):
        raise EvarError(f'{source}: `unit_sec` must be a positive number of seconds, got {unit_sec!r}.')
    name = str(values.get('name') or default_name)
    if not name.replace('-', '').replace('_', '').replace('.', '').isalnum():
        raise EvarError(f'{source}: `name` {name!r} must be letters, digits, - _ . only (it names a folder).')
    text = {k: values.get(k) for k in ('work_root', 'results_dir', 'logs_dir')}
    for key, value in text.items():
        if value is not None and not isinstance(value, str):
            raise EvarError(f'{source}: `{key}` must be a folder path, got {value!r}.')
    return Plan(name=name, models=tuple(models), tasks=tuple(tasks), heads=tuple(heads), seeds=tuple(seeds),
                flags=MappingProxyType({h: MappingProxyType(dict(f)) for h, f in flags.items()}),
                unit_sec=None if unit_sec is None else float(unit_sec), device=device, work_root=text['work_root'],
                results_dir=text['results_dir'] or 'results', logs_dir=text['logs_dir'] or 'logs', source=source)


def load_plan(path) -> Plan:
    """The checked `Plan` of a plan YAML (see the module's docstring for its keys).

    Raises:
        EvarError: a missing or malformed file, an unknown key or a bad value (see `make_plan`).
    """
    from .params import read_yaml_mapping

    path = Path(path)
    return make_plan(read_yaml_mapping(path, 'Plan file'), f'Plan file {path}', path.stem)


def _check_flags(head: str, flags: dict, source: str) -> None:
    """Raises EvarError when a flag is set by the bench itself, or is not a flag of the head's command (or of the
    wrong type)."""
    from .cli import COMMANDS, parse_arguments

    taken = sorted(set(flags) & set(BENCH_SET_FLAGS))
    if taken:
        raise EvarError(f'{source}: flags.{head} sets {taken}, which the bench sets itself (use the plan keys '
                        'models/tasks/seeds/unit_sec/device/work_root/results_dir/logs_dir).')
    mode = BENCH_MODES[head]
    parse_arguments(COMMANDS[mode.command].function(), ['CONFIG', 'TASK', *_flag_words(flags)],
                    f'{source}: flags.{head}:')


def _flag_words(flags) -> list:
    """['--name=value', ...] as the command line reads them back (text as is, other values as Python literals)."""
    return [f'--{k}={v if isinstance(v, str) else repr(v)}' for k, v in flags.items()]


# --- jobs ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowKey:
    """How a job's result row is recognised (see the module's docstring): a single-seed row with these values;
    `run_id` '' matches on config and weight hashes instead."""
    results_file: str
    representation: str
    task: str
    mode: str
    seed: str
    run_id: str = ''
    config_hash: str = ''
    weight_hash: str = ''

    def matches(self, row) -> bool:
        """True when `row` (a `ResultRow`) is this job's result."""
        same = (row.representation == self.representation and row.task == self.task and row.mode == self.mode
                and row.seed == self.seed and row.runs == 1)
        if self.run_id:
            return same and row.run_id == self.run_id
        return same and row.config_hash == self.config_hash and row.weight_hash == self.weight_hash


@dataclass(frozen=True)
class Job:
    """One command of a bench.

    Attributes:
        job_id: a file-safe name, unique in the plan: <model>-<task>-embed or <model>-<task>-<head>-seed<seed>.
        kind: 'embed' or a BENCH_MODES key.
        command: the `evar` subcommand; argv: its arguments (as a user would type them after `evar COMMAND`).
        row: how its result row is recognised; None for the embedding job or when the id could not be computed.
        note: why `row` is None, when it is.
        gpus: GPUs it needs (0 on CPU).
    """
    job_id: str
    kind: str
    command: str
    argv: tuple
    row: Optional[RowKey] = None
    note: str = ''
    gpus: int = 0


@dataclass(frozen=True)
class Unit:
    """What one process (or one SLURM array task) runs: jobs in order; a failed embedding job fails the frozen-head
    jobs after it without running them.

    Attributes:
        name: file-safe name (the pair, or the fine-tuning job).
        jobs: `Job`s.
        bench_dir: the bench's folder (logs/, status/).
        threads: torch / OpenMP threads.
        gpus: GPUs the unit needs (visible ones are given through CUDA_VISIBLE_DEVICES); >1 runs under torchrun.
        cwd: the folder the bench was started in (relative paths of the plan are read from it).
    """
    name: str
    jobs: tuple
    bench_dir: str
    threads: int = 1
    gpus: int = 0
    cwd: str = '.'

    def to_json(self) -> str:
        """The unit as JSON (read back by `unit_from_json`)."""
        return json.dumps(dataclasses.asdict(self), indent=1)


def unit_from_json(text: str) -> Unit:
    """The `Unit` written by `Unit.to_json`."""
    values = json.loads(text)
    jobs = tuple(Job(**{**j, 'argv': tuple(j['argv']), 'row': RowKey(**j['row']) if j['row'] else None})
                 for j in values.pop('jobs'))
    return Unit(**values, jobs=jobs)


def linear_run_id(prepared, kwargs: dict) -> str:
    """The run id `evar linear` will record for `kwargs` (its parsed arguments) on `prepared`."""
    from .heads import head_class
    from .modes.linear import head_options, run_settings, selecting_on_task_metric, settings_id

    names = ('lr', 'hidden', 'standard_scaler', 'mixup', 'epochs', 'early_stop_epochs', 'head', 'k', 'temperature')
    options = selecting_on_task_metric(head_options(**{n: kwargs[n] for n in names if n in kwargs}),
                                       prepared.task.metric)
    head = head_class(options.head).from_options(options, prepared.cfg.run, kwargs.get('seed', 42),
                                                 prepared.source.device)
    return settings_id(run_settings(prepared, head, options, kwargs.get('unit_sec')))


def finetune_run_id(prepared, kwargs: dict) -> str:
    """The run id `evar finetune` will record for `kwargs` (its parsed arguments) on `prepared`."""
    import inspect

    from .modes.finetune import options_from, run_settings
    from .modes.linear import settings_id

    names = [n for n in inspect.signature(options_from).parameters if n != 'cfg_run']
    opts = options_from(prepared.cfg.run, **{n: kwargs[n] for n in names if n in kwargs})
    return settings_id(run_settings(prepared, opts, kwargs.get('unit_sec')))


def _safe(text: str) -> str:
    """`text` with characters other than letters, digits, - _ . replaced by _ (a file name part)."""
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in text)


def _common_words(plan: Plan) -> list:
    words = []
    if plan.work_root is not None:
        words.append(f'--work_root={plan.work_root}')
    if plan.device is not None:
        words.append(f'--device={plan.device}')
    if plan.unit_sec is not None:
        words.append(f'--unit_sec={plan.unit_sec!r}')
    return words + ['--noprogress']


def build_jobs(plan: Plan, gpus_per_job: int = 0) -> list:
    """Every job of `plan` in run order, each with its expected result row (see the module's docstring).

    Computing the ids loads each model's config, its weight files' digest and each task's metadata (no audio is
    read); a model x task that cannot be prepared gets jobs without `row` and a `note` saying why.

    Returns:
        [(pair name, [Job, ...])] per model x task, embedding job first, then frozen heads, then fine-tuning.
    """
    from .cli import COMMANDS, parse_arguments
    from .config import load_config
    from .modes.linear import prepare_run

    pairs = []
    common = _common_words(plan)
    for model in plan.models:
        cfg = load_config(model.config, model.options)
        for task in plan.tasks:
            task_name = _task_name(task)
            pair = _safe(f'{cfg.name}-{task_name}')
            model_words = [model.config, task, *([f'--options={model.options}'] if model.options else []), *common]
            prepared, note = None, ''
            try:
                prepared = prepare_run(model.config, task, model.options, plan.seeds, unit_sec=plan.unit_sec,
                                       work_root=plan.work_root, device=plan.device, progress=False,
                                       check_audio=False)
            except EvarError as e:
                note = f'run id unknown ({e})'
            jobs = []
            frozen = [h for h in plan.heads if BENCH_MODES[h].frozen]
            if frozen:
                jobs.append(Job(f'{pair}-embed', 'embed', 'embed', tuple(model_words), gpus=min(gpus_per_job, 1)))
            for head in frozen + [h for h in plan.heads if not BENCH_MODES[h].frozen]:
                mode = BENCH_MODES[head]
                fn = COMMANDS[mode.command].function()
                for seed in plan.seeds if mode.seeded else (None,):
                    flags = {**dict(mode.flags), **dict(plan.flags.get(head, {}))}
                    words = [*model_words, *([f'--seed={seed}'] if mode.seeded else []),
                             f'--results_dir={plan.results_dir}', f'--logs_dir={plan.logs_dir}', *_flag_words(flags)]
                    if mode.command == 'finetune' and 'workers' not in flags:
                        words.append('--workers=0')  # clips decode in the job's own process: no extra cores
                    row, job_note = None, note
                    if prepared is not None:
                        row, job_note = _row_key(plan, mode, prepared, parse_arguments(fn, words, 'evar bench'),
                                                 seed)
                    job_id = f'{pair}-{head}' + (f'-seed{seed}' if mode.seeded else '')
                    jobs.append(Job(job_id, head, mode.command, tuple(words), row, job_note,
                                    gpus=(gpus_per_job if not mode.frozen else min(gpus_per_job, 1))))
            pairs.append((pair, jobs))
    return pairs


def _task_name(task: str) -> str:
    from .tasks import get_task

    return get_task(task).name


def _row_key(plan: Plan, mode: BenchMode, prepared, kwargs: dict, seed: Optional[int]) -> tuple:
    """(RowKey, '') for a job, or (None, why) when its run id cannot be computed."""
    import importlib

    results_file = str(Path(plan.results_dir) / mode.results_file)
    base = dict(results_file=results_file, representation=prepared.cfg.name,
                task=mode.row_task.format(task=prepared.task.name), mode=mode.row_mode,
                seed='' if seed is None else str(seed))
    try:
        if not mode.run_id:
            return RowKey(**base, config_hash=prepared.cfg.model_hash()[:16],
                          weight_hash=prepared.source.weight_digest()), ''
        module, _, name = mode.run_id.partition(':')
        return RowKey(**base, run_id=getattr(importlib.import_module(module), name)(prepared, kwargs)), ''
    except EvarError as e:
        return None, f'run id unknown ({e})'


def finished_rows(jobs) -> set:
    """The job ids among `jobs` whose result rows are in their results files."""
    from .results import read_rows

    rows = {}
    done = set()
    for job in jobs:
        if job.row is None:
            continue
        path = job.row.results_file
        if path not in rows:
            rows[path] = read_rows(Path(path)) if Path(path).is_file() else []
        if any(job.row.matches(r) for r in rows[path]):
            done.add(job.job_id)
    return done


# --- running a unit (in its own process) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """How a job ended: status 'done' or 'failed', the exit status, the error line and the log file."""
    job_id: str
    status: str
    exit_status: int
    error: str
    log: str
    elapsed_sec: float


def status_path(bench_dir, job_id: str) -> Path:
    """<bench_dir>/status/<job_id>.json."""
    return Path(bench_dir) / 'status' / f'{job_id}.json'


def read_outcome(bench_dir, job_id: str) -> Optional[Outcome]:
    """The recorded `Outcome` of a job, or None when it has none (never ran, or was killed)."""
    path = status_path(bench_dir, job_id)
    try:
        return Outcome(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_outcome(bench_dir, outcome: Outcome) -> None:
    from .fileio import atomic_write_text

    atomic_write_text(status_path(bench_dir, outcome.job_id), json.dumps(dataclasses.asdict(outcome)))


def run_unit(unit: Unit) -> list:
    """Runs the jobs of `unit` in this process, each with its stdout and stderr in <bench_dir>/logs/<job>.log, and
    records each outcome in <bench_dir>/status/. A job whose row is already there is skipped (another run finished
    it). Never raises for a failing job.

    Returns:
        The `Outcome`s of the jobs it ran or failed.
    """
    _limit_threads(unit.threads)
    os.chdir(unit.cwd)  # a SLURM or submitit job may start elsewhere
    outcomes = []
    embed_failed = ''
    for job in unit.jobs:
        if job.row is not None and finished_rows([job]):
            continue
        if embed_failed and BENCH_MODES[job.kind].frozen:
            outcome = Outcome(job.job_id, 'failed', 1, f'not run: {embed_failed}', '', 0.0)
        else:
            outcome = _run_job(job, unit)
            if job.kind == 'embed' and outcome.status == 'failed':
                embed_failed = f'its embedding job {job.job_id} failed'
        _write_outcome(unit.bench_dir, outcome)
        outcomes.append(outcome)
    return outcomes


def _limit_threads(threads: int) -> None:
    """torch's intra-op threads (OpenMP/MKL read their variables when torch loads; the runner sets those)."""
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(max(1, threads))


def _run_job(job: Job, unit: Unit) -> Outcome:
    """Runs one job with fds 1 and 2 sent to its log, so every line the job writes (Python's, C libraries', child
    processes') lands there."""
    import traceback

    log_path = Path(unit.bench_dir) / 'logs' / f'{job.job_id}.log'
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, 'w') as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            print(f'$ {" ".join(_command_line(job, unit))}\n# {unit.threads} thread(s), CUDA_VISIBLE_DEVICES='
                  f'{os.environ.get("CUDA_VISIBLE_DEVICES", "")}', flush=True)
            if unit.gpus > 1 and job.command == 'finetune':
                import subprocess

                status = subprocess.run(_command_line(job, unit)).returncode
            else:
                from .cli import run_command

                status = run_command(job.command, list(job.argv))
        except Exception:  # a bug in a mode: its traceback goes to the job's log, the other jobs go on
            traceback.print_exc()
            status = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    error = ''
    if status != 0:
        error = _last_error(log_path) or f'exit status {status}'
    elif job.row is not None and not finished_rows([job]):
        status, error = 1, (f'no row with run id {job.row.run_id} in {job.row.results_file} after the run (the bench '
                            'computed another id than the mode: a bug)')
    return Outcome(job.job_id, 'failed' if status else 'done', int(status), error, str(log_path),
                   round(time.time() - t0, 1))


def _command_line(job: Job, unit: Unit) -> list:
    """The job's command line: `python -m evar COMMAND ...`, under torchrun for a multi-GPU fine-tuning."""
    if unit.gpus > 1 and job.command == 'finetune':
        return [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={unit.gpus}',
                '-m', 'evar', job.command, *job.argv]
    return [sys.executable, '-m', 'evar', job.command, *job.argv]


def _last_error(log_path: Path) -> str:
    """The last `Error:` line of a log, else its last line (a traceback's exception)."""
    lines = [line.strip() for line in log_path.read_text(errors='replace').splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith('Error:')]
    return (errors or lines or [''])[-1][:300]


def _unit_main(argv: list) -> int:
    """`python -m evar.bench UNIT_JSON`: runs a unit written by the local executor; exit status 0."""
    run_unit(unit_from_json(Path(argv[0]).read_text()))
    return 0


# --- executors -----------------------------------------------------------------------------------------------------

class Progress:
    """One progress view for the whole plan: jobs done / running / failed / left, elapsed time and an estimate of
    the time left (from the jobs finished in this run). A line rewritten in place on a terminal, else a line each
    time the counts change (at most every 10 s).

    Args:
        total: the plan's head jobs; done_before, failed_before: those done, and failed and not retried, before.
        bench_dir, job_ids: where this run's jobs record their outcomes, and their ids.
    """

    def __init__(self, total: int, done_before: int, failed_before: int, bench_dir, job_ids: list, stream=None):
        self.total, self.done_before, self.failed_before = total, done_before, failed_before
        self.bench_dir, self.job_ids = bench_dir, job_ids
        self.stream = stream or sys.stderr
        self.start = time.time()
        self.last = ('', 0.0)

    def line(self, done_now: int, failed_now: int, running: int) -> str:
        """The progress text after `done_now` and `failed_now` jobs of this run ended, `running` units running."""
        elapsed = time.time() - self.start
        done, failed = self.done_before + done_now, self.failed_before + failed_now
        left = self.total - done - failed
        eta = '?' if done_now + failed_now == 0 else _hms(elapsed / (done_now + failed_now) * left)
        return (f'[bench] {done}/{self.total} done, {running} running, {failed} failed, {left} left; '
                f'{_hms(elapsed)} elapsed, ~{eta} left')

    def update(self, running: int, final: bool = False) -> None:
        """Reads this run's outcomes and writes the line when the counts changed (on a terminal in place)."""
        text = self.line(*_count(self.bench_dir, self.job_ids), running)
        counts = text.split(';')[0]
        tty = self.stream.isatty()
        if counts == self.last[0] and (not tty or not final) and (tty or final or time.time() - self.last[1] < 10):
            return
        self.last = (counts, time.time())
        self.stream.write(('\r' + text.ljust(100) + ('\n' if final else '')) if tty else text + '\n')
        self.stream.flush()


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f'{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}'


def _count(bench_dir, job_ids) -> tuple:
    """(done, failed) among `job_ids` (the jobs of this run) from their status files."""
    done = failed = 0
    for job_id in job_ids:
        outcome = read_outcome(bench_dir, job_id)
        if outcome is not None:
            done += outcome.status == 'done'
            failed += outcome.status == 'failed'
    return done, failed


def _die_with_parent() -> None:
    """In a child process: ask Linux to end it (SIGTERM) when the bench runner dies, even by SIGKILL."""
    import ctypes
    import signal

    try:
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:  # not Linux: children of a killed runner finish their current job
        pass


def visible_gpus(device: Optional[str]) -> list:
    """The GPU ids jobs may use: [] when `device` is cpu or no GPU is visible."""
    if device == 'cpu':
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    listed = [g.strip() for g in os.environ.get('CUDA_VISIBLE_DEVICES', '').split(',') if g.strip()]
    return listed or [str(i) for i in range(torch.cuda.device_count())]


def run_local(units: list, n_jobs: int, progress: Progress, gpus: list) -> None:
    """Runs `units` in up to `n_jobs` child processes (`python -m evar.bench UNIT_JSON`), each with its own
    GPU(s) from `gpus` when there are any; returns when all ended. SIGTERM or Ctrl-C ends the children first."""
    import signal
    import subprocess

    pending = list(units)
    running = {}  # Popen -> (unit, its gpus)
    free = list(gpus)
    bench_dir = Path(units[0].bench_dir) if units else None

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while pending or running:
            for proc in [p for p in running if p.poll() is not None]:
                free.extend(running.pop(proc)[1])
            while pending and len(running) < n_jobs and (not gpus or len(free) >= max(1, pending[0].gpus)):
                unit = pending.pop(0)
                take = [free.pop(0) for _ in range(max(1, unit.gpus))] if gpus else []
                path = bench_dir / 'units' / f'{unit.name}.json'
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(unit.to_json())
                env = {**os.environ, **{v: str(unit.threads) for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS',
                                                                       'OPENBLAS_NUM_THREADS')}}
                env['CUDA_VISIBLE_DEVICES'] = ','.join(take) if gpus else ''
                with open(bench_dir / 'units' / f'{unit.name}.log', 'w') as out:
                    proc = subprocess.Popen([sys.executable, '-m', 'evar.bench', str(path)], stdout=out,
                                            stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
                running[proc] = (unit, take)
            progress.update(len(running))
            time.sleep(0.3)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for proc in running:
            proc.terminate()
        for proc in running:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_submitit(units: list, executor: str, bench_dir: Path, progress: Progress, partition: Optional[str],
                 cpus_per_job: int, time_min: int, parallel: int) -> None:
    """Sends `units` to SLURM (or submitit's local executor, the same code path without a cluster) as one array
    job per resource shape (frozen-head pairs, fine-tuning jobs), one array task per unit; waits for them.
    An array task that dies (node failure, time limit) gets its unfinished jobs recorded as failed.

    Raises:
        EvarError: submitit not installed.
    """
    try:
        import submitit
    except ImportError:
        raise EvarError("--executor slurm needs submitit: pip install -e '.[bench]'.") from None
    cluster = 'slurm' if executor == 'slurm' else 'local'
    submitted = []
    for gpus in sorted({u.gpus for u in units}):
        group = [u for u in units if u.gpus == gpus]
        ex = submitit.AutoExecutor(folder=bench_dir / 'submitit', cluster=cluster)
        params = dict(timeout_min=time_min, cpus_per_task=cpus_per_job, gpus_per_node=gpus, name='evar-bench',
                      slurm_array_parallelism=parallel)
        if partition:
            params['slurm_partition'] = partition
        ex.update_parameters(**params)
        submitted += list(zip(ex.map_array(run_unit, group), group))
    try:
        while not all(job.done() for job, _ in submitted):
            progress.update(sum(1 for job, _ in submitted if not job.done()))
            time.sleep(1.0)
    except KeyboardInterrupt:
        for job, _ in submitted:
            job.cancel(check=False)
        raise
    for job, unit in submitted:
        error = job.exception()
        if error is None:
            continue
        for j in unit.jobs:  # what the array task did not finish
            if read_outcome(bench_dir, j.job_id) is None and not (j.row and finished_rows([j])):
                _write_outcome(bench_dir, Outcome(j.job_id, 'failed', 1, f'array task failed: {str(error)[-200:]}',
                                                  str(job.paths.stderr), 0.0))


# --- the command ---------------------------------------------------------------------------------------------------

def bench_command(plan: Optional[str] = None, models: Optional[str] = None, tasks: Optional[str] = None,
                  heads: Optional[str] = None, seeds: Union[tuple, int, str, None] = None, jobs: Optional[int] = None,
                  dry_run: bool = False, retry_failed: bool = False, executor: str = 'local',
                  partition: Optional[str] = None, gpus_per_job: Optional[int] = None,
                  cpus_per_job: Optional[int] = None, time_min: int = 240, name: Optional[str] = None,
                  work_root: Optional[str] = None, results_dir: Optional[str] = None,
                  device: Optional[str] = None) -> int:
    """Runs every model x task x head x seed of a plan (PLAN, a YAML file) or of --models/--tasks/--heads; jobs
    whose rows are already in the results files are skipped, so a killed bench resumes where it stopped.

    Args:
        plan: plan YAML (keys: name, models, tasks, heads, seeds, flags, unit_sec, device, work_root, results_dir,
            logs_dir); or leave it out and give --models, --tasks, --heads.
        models: comma-separated model YAMLs (without a plan).
        tasks: comma-separated built-in task names or task YAMLs (without a plan).
        heads: comma-separated heads: probe, logreg, knn, finetune, zeroshot (without a plan).
        seeds: seeds, e.g. 42,43,44 (default 42), without a plan.
        jobs: units run at once (default: 1 on CPU, the number of visible GPUs on a GPU machine); CPU jobs get
            cores // jobs threads each.
        dry_run: list what would run and what is done, run nothing.
        retry_failed: run again the jobs that failed in an earlier run (otherwise reported and skipped).
        executor: local (processes here), slurm (submitit) or submitit_local (submitit's local executor).
        partition: SLURM partition.
        gpus_per_job: GPUs per fine-tuning job (>1 runs it under torchrun; frozen-head units get one); default 1
            where GPUs are used, 0 on CPU.
        cpus_per_job: threads per unit (default cores // jobs here, 4 on SLURM).
        time_min: SLURM time limit of each array task in minutes.
        name: the plan's name (default: the plan file's stem, or cli-<hash> for the command-line form).
        work_root, results_dir, device: override the plan's (without a plan: as `evar linear`).

    Returns:
        0 when every job is done, 1 when any failed (with a table of failures).

    Raises:
        EvarError: a bad plan or flag, before anything runs.
    """
    if executor not in EXECUTORS:
        raise EvarError(f'--executor must be one of {", ".join(EXECUTORS)}, got {executor!r}.')
    if jobs is not None and jobs < 1:
        raise EvarError(f'--jobs must be >= 1, got {jobs}.')
    overrides = {k: v for k, v in dict(work_root=work_root, results_dir=results_dir, device=device).items()
                 if v is not None}
    if plan is not None:
        if models or tasks or heads or seeds is not None:
            raise EvarError('evar bench: give a PLAN file or --models/--tasks/--heads/--seeds, not both.')
        from .params import read_yaml_mapping

        values = {**read_yaml_mapping(Path(plan), 'Plan file'), **overrides, **({'name': name} if name else {})}
        the_plan = make_plan(values, f'Plan file {plan}', Path(plan).stem)
    else:
        if not (models and tasks and heads):
            raise EvarError('evar bench: give a PLAN file, or all of --models, --tasks and --heads '
                            '(e.g. --models config/melspec.yaml --tasks fsdd --heads logreg).')
        values = {'models': str(models), 'tasks': str(tasks), 'heads': str(heads), **overrides}
        if seeds is not None:
            values['seeds'] = list(seeds) if isinstance(seeds, (tuple, list)) else seeds
        digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]
        the_plan = make_plan({**values, 'name': name or f'cli-{digest}'}, 'evar bench', f'cli-{digest}')
    return run_plan(the_plan, jobs=jobs, dry_run=dry_run, retry_failed=retry_failed, executor=executor,
                    partition=partition, gpus_per_job=gpus_per_job, cpus_per_job=cpus_per_job, time_min=time_min)


def run_plan(plan: Plan, jobs: Optional[int] = None, dry_run: bool = False, retry_failed: bool = False,
             executor: str = 'local', partition: Optional[str] = None, gpus_per_job: Optional[int] = None,
             cpus_per_job: Optional[int] = None, time_min: int = 240, stream=None) -> int:
    """Runs `plan` (see `bench_command` for the arguments); `stream` gets the listing, progress and failure table
    (default stderr).

    Returns:
        0 when every job is done, 1 when any failed.
    """
    stream = stream or sys.stderr
    gpus = visible_gpus(plan.device) if executor == 'local' else []
    on_gpu = bool(gpus) or (executor != 'local' and plan.device != 'cpu')
    gpus_per_job = (1 if on_gpu else 0) if gpus_per_job is None else int(gpus_per_job)
    if gpus_per_job < 0 or (gpus and gpus_per_job > len(gpus)):
        raise EvarError(f'--gpus_per_job must be between 0 and the {len(gpus)} visible GPU(s), got {gpus_per_job}.')
    n_jobs = jobs or max(1, len(gpus))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)
    threads = cpus_per_job or (4 if executor == 'slurm' else max(1, cores // n_jobs))
    bench_dir = plan.bench_dir()
    pairs = build_jobs(plan, gpus_per_job)
    all_jobs = [j for _, js in pairs for j in js]
    done = finished_rows(all_jobs)
    failed_before = set()
    if not retry_failed:
        failed_before = {j.job_id for j in all_jobs if j.kind != 'embed' and j.job_id not in done
                         and (o := read_outcome(bench_dir, j.job_id)) is not None and o.status == 'failed'}
    head_jobs = [j for j in all_jobs if j.kind != 'embed']
    todo = {j.job_id for j in head_jobs if j.job_id not in done and j.job_id not in failed_before}
    units = []
    for pair, js in pairs:
        frozen = [j for j in js if j.kind != 'embed' and BENCH_MODES[j.kind].frozen and j.job_id in todo]
        if frozen:
            units.append(Unit(pair, tuple([js[0], *frozen]), str(bench_dir.resolve()), threads, min(gpus_per_job, 1),
                              os.getcwd()))
        units += [Unit(_safe(j.job_id), (j,), str(bench_dir.resolve()), threads, gpus_per_job, os.getcwd())
                  for j in js if j.kind != 'embed' and not BENCH_MODES[j.kind].frozen and j.job_id in todo]
    print(f'[bench] plan {plan.name} ({plan.source}): {len(plan.models)} model(s) x {len(plan.tasks)} task(s) x '
          f'{len(plan.heads)} head(s) x {len(plan.seeds)} seed(s) = {len(head_jobs)} jobs; '
          f'{len([j for j in head_jobs if j.job_id in done])} done, {len(failed_before)} failed earlier, {len(todo)} '
          f'to run in {len(units)} unit(s); {executor}, {n_jobs} at once, {threads} thread(s) each'
          f'{f", GPUs {gpus}" if gpus else ""}; logs in {bench_dir / "logs"}', file=stream)
    if dry_run:
        for j in all_jobs:
            state = ('done' if j.job_id in done else 'failed earlier' if j.job_id in failed_before
                     else 'to run' if j.job_id in todo or (j.kind == 'embed' and any(u.jobs[0] is j for u in units))
                     else 'not needed')
            note = f'  [{j.note}]' if j.note and state == 'to run' else ''
            print(f'  {state:<14} {j.job_id}: evar {j.command} {" ".join(j.argv)}{note}', file=stream)
        return 0
    for j in all_jobs:  # this run's outcomes replace earlier ones
        if j.job_id in todo or any(u.jobs[0] is j for u in units):
            status_path(bench_dir, j.job_id).unlink(missing_ok=True)
    progress = Progress(len(head_jobs), len([j for j in head_jobs if j.job_id in done]), len(failed_before),
                        bench_dir, sorted(todo), stream)
    if units:
        if executor == 'local':
            run_local(units, n_jobs, progress, gpus)
        else:
            run_submitit(units, executor, bench_dir, progress, partition, threads, time_min, n_jobs)
    done_now = finished_rows(all_jobs)
    outcomes = {j.job_id: read_outcome(bench_dir, j.job_id) for j in all_jobs}
    failures = [(j, outcomes[j.job_id]) for j in all_jobs if j.job_id not in done_now and
                (j.kind != 'embed' or (outcomes[j.job_id] is not None and outcomes[j.job_id].status == 'failed'))]
    n_failed = sum(1 for j, _ in failures if j.kind != 'embed')
    progress.update(0, final=True)
    if not failures:
        print(f'[bench] all {len(head_jobs)} jobs done; rows in {plan.results_dir}', file=stream)
        return 0
    print(f'[bench] {n_failed} of {len(head_jobs)} jobs failed:', file=stream)
    width = max(len(j.job_id) for j, _ in failures)
    for j, outcome in failures:
        why = outcome.error if outcome else 'did not finish (killed?); rerun to resume'
        where = f'  (log {outcome.log})' if outcome and outcome.log else ''
        print(f'  {j.job_id.ljust(width)}  {why}{where}', file=stream)
    return 1


if __name__ == '__main__':
    from .cli import module_main

    module_main(_unit_main)
