"""evar bench: plan checking, parallel units, exact resume after a kill, failures that do not stop the others,
submitit's local executor, and locked appends from many processes."""

import csv
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, SHARED, needs_shared

from evar.bench import load_plan, make_plan, run_plan
from evar.errors import EvarError
from evar.results import ResultRow, append_rows, read_rows

MELSPEC = str(ROOT / 'config' / 'melspec.yaml')
LINSPEC = str(ROOT / 'config' / 'linspec.yaml')


def bench(*args, cwd, timeout=600):
    """`python -m evar bench ARGS` in `cwd`; the CompletedProcess."""
    return subprocess.run([sys.executable, '-m', 'evar', 'bench', *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, 'PYTHONPATH': str(ROOT)})


def write_plan(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def row_table(path: Path) -> dict:
    """{(representation, task, mode, head, seed): (score, run_id)} of a results file; fails on a repeated key."""
    table = {}
    for r in read_rows(path):
        key = (r.representation, r.task, r.mode, r.head, r.seed)
        assert key not in table, f'row {key} is in {path} twice'
        table[key] = (r.score, r.run_id)
    return table


# --- the plan -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('values, expected', [
    (dict(models=[MELSPEC], tasks=['demo'], heads=['logreg'], epochs=3), "unknown key(s) ['epochs']"),
    (dict(models=[MELSPEC], tasks=['demo'], heads=['svm']), "unknown head 'svm'"),
    (dict(models=[MELSPEC], tasks=['nosuchtask'], heads=['logreg']), "Unknown task 'nosuchtask'"),
    (dict(models=[MELSPEC], tasks=['demo'], heads=['logreg'], seeds=['a']), '`seeds` must be integers'),
    (dict(models=[{'config': MELSPEC, 'option': 'x=1'}], tasks=['demo'], heads=['logreg']), 'models[0] must be'),
    (dict(models=[MELSPEC, MELSPEC], tasks=['demo'], heads=['logreg']), "both named 'melspec'"),
    (dict(models=[MELSPEC], tasks=['demo'], heads=['probe'], flags={'probe': {'seed': 3}}), "sets ['seed']"),
    (dict(models=[MELSPEC], tasks=['demo'], heads=['probe'], flags={'probe': {'hiden': '(8,)'}}),
     'unknown flag --hiden. Did you mean --hidden?'),
    (dict(models=[MELSPEC], tasks=['demo'], heads=['probe'], flags={'knn': {'k': 3}}), "flags for 'knn'"),
    (dict(models=[MELSPEC], tasks=['demo'], heads=['logreg'], device='tpu'), '`device` must be cpu or cuda'),
    (dict(tasks=['demo'], heads=['logreg']), '`models` is missing'),
])
def test_bad_plans_name_the_file_and_key(tmp_path, values, expected):
    path = write_plan(tmp_path / 'plan.yaml', **values)
    with pytest.raises(EvarError) as e:
        load_plan(path)
    assert expected in str(e.value) and str(path) in str(e.value)


def test_plan_file_and_command_line_form(tmp_path):
    plan = load_plan(write_plan(tmp_path / 'p.yaml', models=[MELSPEC, {'config': LINSPEC, 'options': 'name=lin2'}],
                                tasks=['demo'], heads=['probe', 'knn'], seeds=[1, 2], flags={'knn': {'k': 3}}))
    assert plan.name == 'p' and plan.seeds == (1, 2) and plan.models[1].options == 'name=lin2'
    assert dict(plan.flags['knn']) == {'k': 3}
    same = make_plan({'models': f'{MELSPEC},{LINSPEC}', 'tasks': 'demo', 'heads': 'probe,knn', 'seeds': 7},
                     'evar bench', 'cli')
    assert same.heads == ('probe', 'knn') and same.seeds == (7,) and len(same.models) == 2


def test_dry_run_lists_jobs_and_runs_nothing(tmp_path, work):
    proc = bench('--models', f'{MELSPEC},{LINSPEC}', '--tasks', 'demo', '--heads', 'logreg,knn,mlp_search',
                 '--seeds', '42,43', '--work_root', work, '--dry_run', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0:2] for line in proc.stderr.splitlines() if line.startswith('  ')]
    assert len(listed) == 2 * (1 + 3 * 2) and all(state == 'to' for state, _ in listed), proc.stderr
    assert '= 12 jobs; 0 done' in proc.stderr
    assert not (tmp_path / 'results').exists()


# --- running ----------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_failing_job_does_not_stop_the_others(tmp_path, work):
    plan = write_plan(tmp_path / 'fails.yaml', tasks=['demo'], heads=['logreg', 'knn'], work_root=str(work),
                      models=[MELSPEC, {'config': str(ROOT / 'config' / 'byola_d512.yaml'),
                                        'options': f'weight_file={tmp_path}/missing.pth'}])
    proc = bench(plan, '--jobs', 2, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    table = proc.stderr[proc.stderr.index('2 of 4 jobs failed'):]
    assert 'byola_d512-demo-logreg-seed42' in table and 'byola_d512-demo-knn-seed42' in table
    assert 'missing.pth' in table  # the embedding job's error, with its log
    assert 'not run: its embedding job byola_d512-demo-embed failed' in table
    embed_log = work / 'bench' / 'fails' / 'logs' / 'byola_d512-demo-embed.log'
    assert 'Error:' in embed_log.read_text() and str(embed_log) in table
    assert set(row_table(tmp_path / 'results' / 'scores.csv')) == {('melspec', 'demo', 'linear', 'logreg', '42'),
                                                                     ('melspec', 'demo', 'knn', 'knn', '42')}
    # a plain rerun does not retry them (reported again, exit 1); --retry_failed does
    again = bench(plan, cwd=tmp_path)
    assert again.returncode == 1 and '2 failed earlier, 0 to run' in again.stderr, again.stderr
    retried = bench(plan, '--retry_failed', cwd=tmp_path)
    assert retried.returncode == 1 and '2 to run' in retried.stderr, retried.stderr


@pytest.mark.slow
def test_submitit_local_executor_gives_the_local_rows(tmp_path, work):
    pytest.importorskip('submitit')
    common = ['--models', f'{MELSPEC},{LINSPEC}', '--tasks', 'demo', '--heads', 'probe,logreg', '--work_root', work]
    local = bench(*common, '--jobs', 2, '--results_dir', tmp_path / 'local', cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    sub = bench(*common, '--jobs', 2, '--executor', 'submitit_local', '--results_dir', tmp_path / 'sub', cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    assert row_table(tmp_path / 'sub' / 'scores.csv') == row_table(tmp_path / 'local' / 'scores.csv')
    assert len(row_table(tmp_path / 'sub' / 'scores.csv')) == 4
    assert any((work / 'bench').glob('cli-*/submitit/*_0_log.out'))
    rerun = bench(*common, '--executor', 'submitit_local', '--results_dir', tmp_path / 'sub', cwd=tmp_path)
    assert rerun.returncode == 0 and '4 done, 0 failed earlier, 0 to run' in rerun.stderr, rerun.stderr


# --- kill and resume on real audio --------------------------------------------------------------------------------

def _subset_tasks(folder: Path) -> list:
    """Four small task YAMLs on ../shared/data (FSDD, Speech Commands, RAVDESS, ESC-50), 90-150 clips each."""
    data = SHARED / 'data'
    specs = {}
    fsdd = sorted(p.name for p in (data / 'fsdd' / 'recordings').glob('*.flac'))
    specs['fsdd_s'] = (data / 'fsdd' / 'recordings', 1.0,
                       [(f, f.split('_')[0], 'test' if int(f.split('_')[2][:-5]) < 3 else 'train') for f in fsdd
                        if f.split('_')[1] in ('george', 'jackson') and int(f.split('_')[2][:-5]) < 8])
    spc = data / 'speech_commands_v2_test_a'
    specs['spc_s'] = (spc, 1.0, [(f'{c.name}/{p.name}', c.name, 'test' if i < 4 else 'train')
                                 for c in sorted(spc.iterdir()) if c.is_dir()
                                 for i, p in enumerate(sorted(c.glob('*.flac'))[:12])])
    rav = data / 'RAVDESS'
    specs['ravdess_s'] = (rav, 2.0, [(f'{p.parent.name}/{p.name}', p.name.split('-')[2],
                                      'test' if int(p.parent.name[-2:]) > 4 else 'train')
                                     for p in sorted(rav.glob('Actor_0[1-6]/*.flac')) if p.name.split('-')[4] == '01'
                                     and p.name.split('-')[5] == '01'])
    esc = data / 'ESC-50'
    with open(esc / 'meta' / 'esc50.csv') as f:
        meta = [r for r in csv.DictReader(f) if int(r['target']) < 10]
    specs['esc_s'] = (esc / 'audio', 2.0, [(r['filename'], r['category'], 'test' if i % 3 == 0 else 'train')
                                           for i, r in enumerate(meta)])
    paths = []
    for name, (audio, unit_sec, rows) in specs.items():
        with open(folder / f'{name}.csv', 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['file_name', 'label', 'split'])
            writer.writerows(rows)
        paths.append(str(write_plan(folder / f'{name}.yaml', metadata=f'{name}.csv', data=str(audio),
                                    unit_sec=unit_sec, name=name)))
    return paths


def _job_id(row) -> str:
    head = 'knn' if row.mode == 'knn' else 'logreg' if row.head == 'logreg' else 'probe'
    return f'{row.representation}-{row.task}-{head}-seed{row.seed}'


@needs_shared
@pytest.mark.slow
def test_killed_bench_resumes_without_redoing_finished_jobs(tmp_path):
    """3 models x 4 real tasks x 3 heads, --jobs 2: killed (SIGKILL of the runner) after a third of its rows, then
    resumed; finished jobs keep their one row and their untouched log, and the rows equal an uninterrupted run's."""
    from helpers.tiny_models import tiny_byola

    tasks = _subset_tasks(tmp_path)
    weights = tiny_byola(tmp_path)['weight_file']
    tiny = write_plan(tmp_path / 'tiny_byola.yaml', audio_repr='byola', weight_file=weights, feature_d=64,
                      lr_lineareval=0.001, early_stop_epochs=5)
    work = tmp_path / 'work'
    values = dict(models=[MELSPEC, LINSPEC, str(tiny)], tasks=tasks, heads=['probe', 'logreg', 'knn'],
                  work_root=str(work), flags={'probe': {'epochs': 30}})
    reference = write_plan(tmp_path / 'reference.yaml', **values, results_dir=str(tmp_path / 'ref'))
    proc = bench(reference, '--jobs', 2, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = row_table(tmp_path / 'ref' / 'scores.csv')
    assert len(expected) == 36

    plan = write_plan(tmp_path / 'resume.yaml', **values, results_dir=str(tmp_path / 'res'))
    scores = tmp_path / 'res' / 'scores.csv'
    runner = subprocess.Popen([sys.executable, '-m', 'evar', 'bench', str(plan), '--jobs', '2'], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, 'PYTHONPATH': str(ROOT)})
    deadline = time.time() + 300
    while time.time() < deadline and not (scores.exists() and len(read_rows(scores)) >= 12):
        time.sleep(0.2)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    time.sleep(3)  # its unit processes end with it (PR_SET_PDEATHSIG); nothing may write after this
    bench_dir = work / 'bench' / 'resume'
    alive = [p for p in Path('/proc').glob('[0-9]*') if str(bench_dir).encode() in _cmdline(p)]
    assert not alive, 'unit processes outlived the killed runner'
    before = read_rows(scores)
    assert 12 <= len(before) < 36
    logs = {_job_id(r): bench_dir / 'logs' / f'{_job_id(r)}.log' for r in before}
    stamps = {job: (log.stat().st_mtime_ns, log.read_text()) for job, log in logs.items()}

    dry = bench(plan, '--dry_run', cwd=tmp_path)
    assert f'{len(before)} done, 0 failed earlier, {36 - len(before)} to run' in dry.stderr, dry.stderr
    resumed = bench(plan, '--jobs', 2, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert row_table(scores) == expected  # no repeated row, same scores and run ids as the uninterrupted run
    assert {job: (log.stat().st_mtime_ns, log.read_text()) for job, log in logs.items()} == stamps
    unit = next((bench_dir / 'units').glob('*.json')).read_text()
    assert f'"threads": {max(1, len(os.sched_getaffinity(0)) // 2)}' in unit  # cores // jobs


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / 'cmdline').read_bytes()
    except OSError:
        return b''


# --- locked appends from many processes --------------------------------------------------------------------------

def _append_many(path: str, writer: int, n: int) -> None:
    for i in range(n):
        append_rows(Path(path), [ResultRow(representation=f'w{writer}', task='t', score=i / n, run_id=f'{i:08x}',
                                           report='x' * 2000, seed=str(i))])


def test_appends_from_many_processes_keep_every_row(tmp_path):
    """Bench jobs on several processes (or nodes) append to one scores.csv: every row arrives whole, once."""
    path = tmp_path / 'scores.csv'
    context = multiprocessing.get_context('spawn')
    workers = [context.Process(target=_append_many, args=(str(path), w, 40)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    rows = read_rows(path)
    assert sorted((r.representation, r.seed) for r in rows) == sorted((f'w{w}', str(i)) for w in range(4)
                                                                       for i in range(40))
    assert all(r.report == 'x' * 2000 for r in rows)


def test_run_plan_without_jobs_to_run_returns_zero(tmp_path, work):
    """A plan whose rows are all present runs nothing and exits 0 (the resume rule on precomputed run ids)."""
    import io

    plan = make_plan(dict(models=[MELSPEC], tasks=['demo'], heads=['logreg'], work_root=str(work),
                          results_dir=str(tmp_path / 'r')), 'test', 'p')
    assert run_plan(plan, stream=io.StringIO()) == 0
    out = io.StringIO()
    assert run_plan(plan, stream=out) == 0
    assert '1 done, 0 failed earlier, 0 to run in 0 unit(s)' in out.getvalue()
    assert len(read_rows(tmp_path / 'r' / 'scores.csv')) == 1


# --- GPUs, torchrun, fine-tuning ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_units_get_their_own_gpus(tmp_path, work):
    """The local executor gives each running unit its own GPU (CUDA_VISIBLE_DEVICES), from the ids it was given;
    here ids of GPUs that do not exist, which the CPU-only jobs ignore."""
    from evar.bench import Progress, Unit, build_jobs, run_local

    plan = make_plan(dict(models=[MELSPEC, LINSPEC], tasks=['demo'], heads=['logreg'], work_root=str(work),
                          results_dir=str(tmp_path / 'r'), device='cpu'), 'test', 'gpus')
    bench_dir = plan.bench_dir().resolve()
    units = [Unit(pair, tuple(jobs), str(bench_dir), 1, 1, os.getcwd()) for pair, jobs in build_jobs(plan, 1)]
    run_local(units, 2, Progress(2, 0, 0, bench_dir, []), gpus=['5', '7'])
    seen = sorted((bench_dir / 'logs' / f'{pair}-logreg-seed42.log').read_text().splitlines()[1].split('=')[1]
                  for pair in ('melspec-demo', 'linspec-demo'))
    assert seen == ['5', '7']


def test_multi_gpu_finetuning_runs_under_torchrun():
    from evar.bench import Job, Unit, _command_line

    job = Job('m-t-finetune-seed1', 'finetune', 'finetune', ('c.yaml', 'fsdd', '--seed=1'))
    words = _command_line(job, Unit('u', (job,), '/b', threads=4, gpus=4))
    assert words[1:6] == ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=4', '-m']
    assert words[6:] == ['evar', 'finetune', 'c.yaml', 'fsdd', '--seed=1']
    assert _command_line(job, Unit('u', (job,), '/b', gpus=1))[1:4] == ['-m', 'evar', 'finetune']


@pytest.mark.slow
def test_finetuning_jobs_resume_on_their_run_ids(tmp_path, work):
    """The bench computes fine-tuning's run id before the run: after one run the job is done, not run again."""
    plan = write_plan(tmp_path / 'ft.yaml', models=[MELSPEC], tasks=['demo'], heads=['finetune'], work_root=str(work),
                      flags={'finetune': {'epochs': 1, 'warmup_epochs': 0, 'batch_size': 32}})
    first = bench(plan, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert [r.mode for r in read_rows(tmp_path / 'results' / 'ft-scores.csv')] == ['finetune']
    again = bench(plan, '--dry_run', cwd=tmp_path)
    assert '1 done, 0 failed earlier, 0 to run' in again.stderr, again.stderr
