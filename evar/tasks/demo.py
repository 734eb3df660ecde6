"""The built-in `demo` task: generated tones, beeps and noises (evar.demo writes them on first use)."""

from __future__ import annotations

from .base import Task, task_table

TASKS = task_table(
    Task('demo', 1.0, domain='synthetic'),  # no builder: lineareval generates it offline (evar.demo.ensure_demo)
)
