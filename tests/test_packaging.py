import re
import tomllib

from helpers import ROOT


def test_requirements_match_pyproject():
    declared = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['dependencies']
    listed = [line.strip() for line in (ROOT / 'requirements.txt').read_text().splitlines()
              if line.strip() and not line.startswith('#')]
    assert sorted(declared) == sorted(listed)
    # torchaudio and librosa stay out: evar has its own audio reader and filterbanks. scikit-learn and pandas may be
    # run-time dependencies where a mode needs them (issue 8).
    assert not any(re.match(r'torchaudio|librosa', d) for d in declared)


def test_import_is_cheap():
    import subprocess
    import sys

    code = 'import sys, evar, evar.tasks, evar.config; print("torch" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == 'False'


def test_lint_and_docstrings():
    """ruff with the project's rules: pyflakes, pycodestyle, bugbear, and a docstring on every public name of evar/."""
    import shutil
    import subprocess

    ruff = shutil.which('ruff')
    assert ruff, 'ruff is part of the test extra (pip install -e ".[test]")'
    proc = subprocess.run([ruff, 'check', 'evar', 'tests', 'benchmarks', 'app', 'plugin'], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
