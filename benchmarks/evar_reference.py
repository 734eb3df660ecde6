"""Run the original EVAR toolkit (nttcslab/eval-audio-repr) as a reference and measure it.

This drives a user's own EVAR checkout through a subprocess; nothing of EVAR is imported or shipped here.
It runs the command an EVAR user runs for a linear evaluation,

    python 2pass_lineareval.py <config> <task> --options=<options> --repeat <repeat>

with the working directory set to the EVAR checkout, after removing EVAR's embedding cache (`work/cache`) so
that the embeddings are really computed. It reports:

- the total wall time, and the wall time of each step that 2pass_lineareval.py starts (it prints a
  `>>> python lineareval.py ... --step=...` line before each: one precompute step, then one train/test step
  per seed),
- peak memory: the largest single process in the run's process tree (exact, from the kernel's accounting of
  the waited-for tree, as `/usr/bin/time -v` reports it), and the peak of the summed RSS of the whole tree
  (EVAR's DataLoader worker processes included; a page they share is counted in each process that maps it), sampled from
  /proc on Linux; optionally the summed PSS, which counts shared pages once,
- the CPU time of EVAR's processes, and the CPU time other processes used meanwhile (a busy machine shows here),
- the scores EVAR appended to its `results/scores.csv` during this run, one per seed.

EVAR's 2pass_lineareval.py starts its steps as `python lineareval.py ...`, so the `python` that PATH finds must be
the one of EVAR's environment; this harness puts `--evar_python` first on PATH for the run.

Use from another benchmark:

    from benchmarks.evar_reference import run_evar
    result = run_evar('/path/to/eval-audio-repr', '/path/to/venv/bin/python', 'cremad', 'config/byola.yaml',
                      'weight_file=/path/to/AudioNTT2020-BYOLA-64x96d512.pth,feature_d=512', repeat=3)

or from the command line:

    python benchmarks/evar_reference.py --evar_dir ~/eval-audio-repr --evar_python ~/venv/bin/python \\
        --task cremad --config config/byola.yaml \\
        --options weight_file=/path/AudioNTT2020-BYOLA-64x96d512.pth,feature_d=512 --repeat 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

_STEP_LINE = re.compile(r'^>>> .*lineareval\.py\b')
_PAGE_KB = (os.sysconf('SC_PAGE_SIZE') // 1024) if hasattr(os, 'sysconf') else 4


# ---------------------------------------------------------------------------------------------------------------
# Memory sampling of a process tree (Linux /proc; silently does nothing elsewhere)

def _children_map():
    """{ppid: [pid, ...]} for every process visible in /proc."""
    children = {}
    try:
        names = os.listdir('/proc')
    except OSError:
        return children
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f'/proc/{name}/stat', 'rb') as f:
                stat = f.read().decode('ascii', 'replace')
        except OSError:
            continue
        # Field 4 (ppid) follows the command name, which is in parentheses and may contain spaces.
        rest = stat[stat.rfind(')') + 2:].split()
        if len(rest) > 1:
            children.setdefault(int(rest[1]), []).append(int(name))
    return children


def _tree(root_pid):
    children = _children_map()
    pids, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, ()))
    return pids


def _rss_kb(pid):
    try:
        with open(f'/proc/{pid}/statm') as f:
            return int(f.read().split()[1]) * _PAGE_KB
    except (OSError, ValueError, IndexError):
        return 0


def _pss_kb(pid):
    try:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                if line.startswith('Pss:'):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _TreeMemorySampler(threading.Thread):
    """Polls the summed RSS and PSS of a process and all its descendants; keeps the peaks."""

    def __init__(self, pid, interval=0.5, pss=True):
        super().__init__(daemon=True)
        self.pid, self.interval, self.pss = pid, interval, pss
        self.peak_rss_sum_kb = self.peak_pss_sum_kb = self.peak_single_rss_kb = 0
        self.max_processes = 0
        self._stop_event = threading.Event()

    def run(self):
        if not os.path.isdir('/proc'):
            return
        while not self._stop_event.is_set():
            pids = _tree(self.pid)
            rss = [_rss_kb(p) for p in pids]
            self.peak_rss_sum_kb = max(self.peak_rss_sum_kb, sum(rss))
            self.peak_single_rss_kb = max(self.peak_single_rss_kb, max(rss, default=0))
            if self.pss:
                self.peak_pss_sum_kb = max(self.peak_pss_sum_kb, sum(_pss_kb(p) for p in pids))
            self.max_processes = max(self.max_processes, sum(1 for r in rss if r > 0))
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()


# ---------------------------------------------------------------------------------------------------------------
# EVAR's results/scores.csv

def _read_scores(csv_path):
    path = Path(csv_path)
    if not path.exists():
        return []
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _python_on_path(evar_python, tmpdir):
    """A folder whose `python` runs `evar_python`, to be put first on PATH.

    A virtual environment's bin/ folder already has one; otherwise a small wrapper script is written to tmpdir
    (a wrapper rather than a symlink keeps a venv's python recognising its venv).
    """
    evar_python = os.path.abspath(evar_python)  # not realpath: a venv's python is a symlink that must stay so
    folder = os.path.dirname(evar_python)
    candidate = os.path.join(folder, 'python')
    if os.path.exists(candidate) and os.path.samefile(candidate, evar_python):
        return folder
    wrapper = os.path.join(tmpdir, 'python')
    with open(wrapper, 'w') as f:
        f.write(f'#!/bin/sh\nexec {shlex.quote(evar_python)} "$@"\n')
    os.chmod(wrapper, 0o755)
    return tmpdir


def _wait_with_rusage(proc):
    """Wait for proc; return (largest max RSS in KiB, CPU seconds) of proc and its waited-for descendants.

    Both are None where os.wait4 is not available.
    """
    if hasattr(os, 'wait4'):
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except ChildProcessError:
            proc.wait()
            return None, None
        proc.returncode = os.waitstatus_to_exitcode(status)
        scale = 1 if sys.platform.startswith('linux') else 1 / 1024  # macOS reports bytes
        return int(usage.ru_maxrss * scale), usage.ru_utime + usage.ru_stime
    proc.wait()
    return None, None


def _machine_busy_s():
    """CPU seconds all cores of this machine have been busy since boot (Linux), or None."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


# ---------------------------------------------------------------------------------------------------------------

def run_evar(evar_dir, evar_python, task, config='config/byola.yaml', options='', repeat=3, *,
             clear_cache=True, log_file=None, echo=False, sample_memory=True, sample_pss=False,
             sample_interval=0.5):
    """Run EVAR's 2pass_lineareval.py once in `evar_dir` with `evar_python`, measured.

    Args:
        evar_dir: the EVAR checkout (the folder holding 2pass_lineareval.py, evar/, work/).
        evar_python: the python of EVAR's environment.
        task: an EVAR task name (e.g. 'cremad', 'spcv2'); evar/metadata/<task>.csv and work/16k/<task> must exist.
        config: the config file, relative to evar_dir or absolute.
        options: EVAR's comma-separated `--options` string (e.g. 'weight_file=...,feature_d=512').
        repeat: how many train/test runs (seeds 42, 43, ...).
        clear_cache: remove evar_dir/work/cache first so the embeddings are computed, not loaded.
        log_file: where to write EVAR's full output (None: not kept).
        echo: also copy EVAR's output to this process's stdout.
        sample_memory: poll /proc for the process tree's summed RSS (cheap: reads statm only).
        sample_pss: also sum PSS from smaps_rollup (shared pages counted once). Off by default: reading it for a
            multi-GB process twice a second cost about 5 CPU-seconds and slowed EVAR's precompute step by about
            2 s (roughly 7%) on a 2-core machine; RSS sampling alone made no measurable difference.
        sample_interval: seconds between memory samples.

    Returns a dict with the command, return code, wall times (total and per step), peak memory figures and the
    score rows EVAR appended to results/scores.csv during this run.
    """
    evar_dir = Path(evar_dir).expanduser().resolve()
    script = evar_dir / '2pass_lineareval.py'
    if not script.is_file():
        raise FileNotFoundError(f'{script} not found: --evar_dir must be an EVAR checkout.')
    if not os.path.exists(evar_python):
        raise FileNotFoundError(f'EVAR python {evar_python} not found.')
    scores_csv = evar_dir / 'results' / 'scores.csv'
    cache_dir = evar_dir / 'work' / 'cache'
    if clear_cache and cache_dir.exists():
        shutil.rmtree(cache_dir)
    n_scores_before = len(_read_scores(scores_csv))

    cmd = [os.path.abspath(evar_python), '2pass_lineareval.py', str(config), str(task),
           f'--options={options}', f'--repeat={int(repeat)}']
    steps, out = [], None
    with tempfile.TemporaryDirectory(prefix='evar_reference_') as tmpdir:
        env = dict(os.environ)
        env['PATH'] = _python_on_path(evar_python, tmpdir) + os.pathsep + env.get('PATH', '')
        env['PYTHONUNBUFFERED'] = '1'  # so each step's banner line arrives when the step starts
        env.pop('PYTHONPATH', None)
        if log_file is not None:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            out = open(log_file, 'w')
        try:
            busy0 = _machine_busy_s()
            t0 = time.perf_counter()
            # Own session, so that an interrupted run can take EVAR's DataLoader workers down with it.
            proc = subprocess.Popen(cmd, cwd=evar_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=hasattr(os, 'killpg'))
            sampler = _TreeMemorySampler(proc.pid, interval=sample_interval, pss=sample_pss)
            if sample_memory:
                sampler.start()
        except BaseException:
            if out is not None:
                out.close()
            raise
        try:
            for raw in iter(proc.stdout.readline, b''):
                now = time.perf_counter() - t0
                line = raw.decode('utf-8', 'replace')
                if _STEP_LINE.match(line):
                    step = re.search(r'--step=(\S+)', line)
                    seed = re.search(r'--seed=(\d+)', line)
                    steps.append({'step': step.group(1) if step else None,
                                  'seed': int(seed.group(1)) if seed else None, 'start_s': now})
                if out is not None:
                    out.write(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            proc.stdout.close()
            max_single_kb, cpu_s = _wait_with_rusage(proc)
            wall = time.perf_counter() - t0
            busy1 = _machine_busy_s()
        except BaseException:
            if proc.returncode is None and hasattr(os, 'killpg'):
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
                proc.wait()
            raise
        finally:
            if sampler.is_alive():
                sampler.stop()
            if out is not None:
                out.close()

    for i, s in enumerate(steps):
        end = steps[i + 1]['start_s'] if i + 1 < len(steps) else wall
        s['wall_s'] = end - s['start_s']

    new_rows = _read_scores(scores_csv)[n_scores_before:]
    train_steps = [s for s in steps if s['step'] == '2pass_2_train_test']
    scores = []
    for i, row in enumerate(new_rows):
        try:
            value = float(row.get('score', 'nan'))
        except ValueError:
            value = float('nan')
        scores.append({'seed': train_steps[i]['seed'] if i < len(train_steps) else None,
                       'representation': row.get('representation'), 'task': row.get('task'),
                       'score': value, 'run_id': row.get('run_id')})

    precompute = [s['wall_s'] for s in steps if s['step'] == '2pass_1_precompute_only']
    other_cpu_s = None
    if busy0 is not None and busy1 is not None and cpu_s is not None:
        other_cpu_s = max(0.0, (busy1 - busy0) - cpu_s)
    mib = lambda kb: None if kb is None else round(kb / 1024, 1)  # noqa: E731
    values = [s['score'] for s in scores]
    return {
        'command': ' '.join(shlex.quote(c) for c in cmd),
        'cwd': str(evar_dir),
        'returncode': proc.returncode,
        'wall_s': wall,
        'steps': steps,
        'precompute_s': precompute[0] if precompute else None,
        'train_test_s': [s['wall_s'] for s in train_steps],
        'peak_rss_single_process_mib': mib(max_single_kb),
        'peak_rss_single_process_sampled_mib': mib(sampler.peak_single_rss_kb) if sampler.peak_rss_sum_kb else None,
        'peak_rss_tree_sum_mib': mib(sampler.peak_rss_sum_kb) if sampler.peak_rss_sum_kb else None,
        'peak_pss_tree_sum_mib': mib(sampler.peak_pss_sum_kb) if sampler.peak_pss_sum_kb else None,
        'max_processes': sampler.max_processes or None,
        'cpu_s': cpu_s,
        # CPU time other processes on this machine used meanwhile (this harness's own sampling included): a
        # large value means the timings were taken on a busy machine.
        'other_cpu_s': other_cpu_s,
        'cpu_count': os.cpu_count(),
        'scores': scores,
        'score_mean': sum(values) / len(values) if values else None,
        'log_file': str(log_file) if log_file is not None else None,
    }


def format_result(r):
    lines = [f"EVAR: {r['command']}", f"  cwd: {r['cwd']}", f"  return code: {r['returncode']}",
             f"  total wall time: {r['wall_s']:.1f} s"]
    if r['cpu_s'] is not None:
        other = f", other processes meanwhile {r['other_cpu_s']:.1f} s" if r['other_cpu_s'] is not None else ''
        lines.append(f"  CPU time of EVAR's processes: {r['cpu_s']:.1f} s on {r['cpu_count']} cores{other}")
    for s in r['steps']:
        seed = f" seed={s['seed']}" if s['seed'] is not None else ''
        lines.append(f"    {s['step']}{seed}: {s['wall_s']:.1f} s")
    lines.append(f"  peak RSS, largest single process: {r['peak_rss_single_process_mib']} MiB")
    if r['peak_rss_tree_sum_mib'] is not None:
        pss = f"; summed PSS: {r['peak_pss_tree_sum_mib']} MiB" if r['peak_pss_tree_sum_mib'] is not None else ''
        lines.append(f"  peak RSS summed over the process tree (sampled, up to {r['max_processes']} processes): "
                     f"{r['peak_rss_tree_sum_mib']} MiB{pss}")
    for s in r['scores']:
        lines.append(f"  score seed={s['seed']}: {s['score']:.5f}  ({s['representation']}, {s['task']}, "
                     f"run_id {s['run_id']})")
    if r['score_mean'] is not None:
        lines.append(f"  mean score: {r['score_mean']:.5f}")
    else:
        lines.append('  no score was appended to results/scores.csv')
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--evar_dir', required=True, help='EVAR checkout (holds 2pass_lineareval.py)')
    p.add_argument('--evar_python', required=True, help="python of EVAR's environment")
    p.add_argument('--task', required=True, help='EVAR task name, e.g. cremad or spcv2')
    p.add_argument('--config', default='config/byola.yaml', help='EVAR config file (default: %(default)s)')
    p.add_argument('--options', default='', help="EVAR's --options string, e.g. weight_file=...,feature_d=512")
    p.add_argument('--repeat', type=int, default=3, help='train/test runs, seeds 42.. (default: %(default)s)')
    p.add_argument('--keep_cache', action='store_true', help="don't remove EVAR's work/cache first")
    p.add_argument('--log', default=None, help="write EVAR's full output to this file")
    p.add_argument('--echo', action='store_true', help="copy EVAR's output to stdout while it runs")
    p.add_argument('--no_memory_sampling', action='store_true',
                   help='skip polling /proc for the summed RSS of the process tree')
    p.add_argument('--pss', action='store_true',
                   help='also sample the summed PSS (smaps_rollup; slows a large run down a little)')
    p.add_argument('--json', default=None, help='also write the result as JSON to this file')
    args = p.parse_args(argv)
    # A SIGTERM ends the run like Ctrl-C does: run_evar then takes EVAR's whole process group down with it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    try:
        result = run_evar(args.evar_dir, args.evar_python, args.task, args.config, args.options, args.repeat,
                          clear_cache=not args.keep_cache, log_file=args.log, echo=args.echo,
                          sample_memory=not args.no_memory_sampling, sample_pss=args.pss)
    except FileNotFoundError as e:
        p.error(str(e))
    print(format_result(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if result['returncode'] == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
