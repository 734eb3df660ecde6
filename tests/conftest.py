"""pytest fixtures shared by the test files (helpers are in tests/helpers/)."""

import pytest


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory):
    """A work root holding the generated demo task (made once per session)."""
    from evar.demo import ensure_demo

    root = tmp_path_factory.mktemp('work')
    ensure_demo(root)
    return root


@pytest.fixture
def work(tmp_path, demo_root):
    """A fresh work root (own metadata, cache) whose demo audio links to the session's generated clips."""
    import shutil

    root = tmp_path / 'work'
    (root / 'metadata').mkdir(parents=True)
    shutil.copy(demo_root / 'metadata' / 'demo.csv', root / 'metadata')
    (root / '16k').mkdir()
    (root / '16k' / 'demo').symlink_to(demo_root / '16k' / 'demo')
    return root
