"""The README's commands are the ones that work: its first command's evaluation runs as written, and its test
command is the one CI runs."""

import re
import shlex

from helpers import ROOT, run_script


def quick_start_commands() -> list:
    text = (ROOT / 'README.md').read_text()
    section = text.split('## Quick start', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```bash\n(.*?)\n```', section, flags=re.S)


def test_first_command_installs_without_downloads_and_evaluates_a_pretrained_model(tmp_path):
    first = quick_start_commands()[0]
    steps = [shlex.split(step) for step in first.split('&&')]
    assert ['pip', 'install', '-e', '.'] in steps and not any('curl' in s or 'wget' in s for s in first.split())
    run = next(step for step in steps if step[:2] == ['python', 'lineareval.py'])
    config = run[2]
    assert 'melspec' not in config and 'linspec' not in config  # a pretrained network, not a fixed baseline
    proc = run_script('lineareval.py', ROOT / config, *run[3:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    row = (tmp_path / 'results' / 'scores.csv').read_text().splitlines()[1].split(',')
    assert row[1] == 'demo' and float(row[2]) > 0.8


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / '.ci' / 'run').read_text()
    for step in quick_start_commands()[1].split('&&'):
        words = step.split()
        if words[:2] == ['pip', 'install']:
            packages = [w for w in words[2:] if not w.startswith('-')]
            assert all(p in ci for p in packages), step
        else:
            assert step.strip() in ci, step
