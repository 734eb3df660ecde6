"""The `evar` command and the entry scripts: flags checked before any work, one error style, subcommands."""

import os
import subprocess
import sys

import pytest

from helpers import ROOT, run_script
from evar.cli import COMMANDS, main, parse_arguments
from evar.errors import EvarError
from evar.results import read_rows

MELSPEC = ROOT / 'config' / 'melspec.yaml'


def example(config_file: str, task: str, seed: int = 42, lr: float = None, hidden: tuple = (), bf16: bool = False,
            options: str = ''):
    """A function with the shapes of the real commands' parameters."""


def test_parse_arguments_reads_flags_as_fire_does():
    kwargs = parse_arguments(example, ['c.yaml', 'esc50', '--seed=7', '--hidden', '(512,)', '--bf16', '--lr',
                                       '1e-3', '--options', 'a=1,+b=[1, 2]'], 'x')
    assert kwargs == {'config_file': 'c.yaml', 'task': 'esc50', 'seed': 7, 'hidden': (512,), 'bf16': True,
                      'lr': 0.001, 'options': 'a=1,+b=[1, 2]'}
    assert parse_arguments(example, ['c', 't', '--nobf16', '--hidden', '256'], 'x') == {
        'config_file': 'c', 'task': 't', 'bf16': False, 'hidden': (256,)}
    assert parse_arguments(example, ['--task', 't', 'c'], 'x') == {'config_file': 'c', 'task': 't'}


@pytest.mark.parametrize('argv,message', [
    (['c', 't', '--hiden', '(128,)'], 'unknown flag --hiden. Did you mean --hidden?'),
    (['c', 't', '--x'], 'Valid flags: --seed, --lr, --hidden, --bf16, --options (positional: CONFIG_FILE TASK).'),
    (['c', 't', '--option', 'a=1'], 'Did you mean --options?'),
    (['c', 't', '--seed', 'abc'], "--seed expects an integer, got 'abc'"),
    (['c', 't', '--lr', 'fast'], "--lr expects a number, got 'fast'"),
    (['c', 't', '--bf16', 'maybe'], 'expects True or False'),
    (['c'], 'missing argument(s) TASK'),
    (['c', 't', 'extra'], "--seed expects an integer, got 'extra'"),  # positional words fill parameters in order
    (['c', 't', '1', '0.1', '(1,)', 'True', 'o', 'x'], 'too many positional arguments'),
])
def test_bad_flags_are_errors(argv, message):
    with pytest.raises(EvarError) as e:
        parse_arguments(example, argv, 'prog')
    assert message in str(e.value)


@pytest.mark.parametrize('script,args', [
    ('lineareval.py', ['--hiden', '(128,)']),
    ('lineareval.py', ['--seed', 'abc']),
    ('2pass_lineareval.py', ['--step', '2pass_1_precompute_only', '--bogus']),
    ('lineareval.py', ['--step', 'nonsense']),
])
def test_mistyped_flag_stops_before_any_work(tmp_path, script, args):
    proc = run_script(script, MELSPEC, 'demo', *args, '--work_root', tmp_path / 'w', cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith('Error:')]
    assert proc.returncode == 1 and len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert not (tmp_path / 'results').exists() and not (tmp_path / 'w').exists()  # nothing embedded or recorded


def test_evar_command_lists_and_suggests_subcommands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert main(['linera']) == 1
    assert 'Did you mean linear?' in capsys.readouterr().err
    assert main(['knn', '--help']) == 0
    assert '--temperature' in capsys.readouterr().out


def test_evar_knn_and_linear_write_rows_with_their_mode(tmp_path, work):
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    for argv in (['knn', MELSPEC, 'demo'], ['linear', MELSPEC, 'demo', '--head', 'logreg']):
        proc = subprocess.run([sys.executable, '-m', 'evar', *map(str, argv), '--work_root', str(work),
                               '--progress', 'False'], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / 'results' / 'scores.csv')
    assert [(r.mode, r.head) for r in rows] == [('knn', 'knn'), ('linear', 'logreg')]
    assert all(0.5 < r.score <= 1.0 for r in rows)  # the demo's classes are easy to tell apart


def test_summarize_into_a_closed_pipe_is_quiet(tmp_path, work):
    from evar.modes.linear import HeadOptions, lineareval

    lineareval(MELSPEC, 'demo', work_root=work, results_dir=tmp_path / 'results', logs_dir=tmp_path / 'logs',
               progress=False, head=HeadOptions(head='knn'))
    cmd = (f'{sys.executable} {ROOT / "summarize.py"} --results {tmp_path / "results" / "scores.csv"} '
           f'--out "" | head -c 1')
    proc = subprocess.run(['bash', '-c', cmd], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert 'Traceback' not in proc.stderr and 'Error' not in proc.stderr, proc.stderr


@pytest.mark.parametrize('argv', [['-m', 'evar.metadata', 'nosuch', '.'], ['-m', 'evar.metadata'],
                                  ['-m', 'evar.check'], ['-m', 'evar.check', 'missing.yaml'],
                                  ['-m', 'evar', 'metadata', 'esc50', 'no_such_folder'], ['-m', 'evar', 'check']])
def test_every_tool_reports_bad_input_the_same_way(tmp_path, argv):
    proc = subprocess.run([sys.executable, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'PYTHONPATH': str(ROOT)})
    errors = [line for line in proc.stderr.splitlines() if line.startswith('Error:')]
    assert proc.returncode == 1 and len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert 'usage:' not in proc.stderr


@pytest.mark.parametrize('args', [['-m', 'evar'], ['-m', 'evar', 'linear', '--help'], [str(ROOT / 'lineareval.py'), '--help']])
def test_help_into_a_closed_pipe_is_quiet(tmp_path, args):
    cmd = ' '.join([sys.executable, *args]) + ' | head -c 1'
    proc = subprocess.run(['bash', '-c', cmd], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert 'Traceback' not in proc.stderr and 'Error' not in proc.stderr, proc.stderr
