"""Write a built-in task's metadata CSV from its dataset as the publisher distributes it.

Usage:
    python -m evar.metadata <task> <dataset_root> [--work_root work] [--out PATH] [--split_file PATH] [--no_link]

The CSV has the columns `file_name,label,split` (split: train/valid/test) or `file_name,label,fold` for the
cross-validated tasks (us8k: 10 folds, esc50: 5). `file_name` is the clip's path relative to `dataset_root`
(posix slashes), naming the file that exists on disk whatever its audio extension: a publisher list naming
`x.wav` matches `x.flac`. Multi-label labels are comma-separated in one (quoted) field. Rows are sorted by
file name. Clips that a publisher list names but that are not on disk are left out with a warning.

The CSV goes to `<work_root>/metadata/<task>.csv` (or `--out`), written atomically; the work root is
`--work_root`, else `$EVAR_WORK`, else `work` (as for lineareval). Unless `--no_link`, the audio is made usable at
once: when `<work_root>/<rate>/<data folder>` does not exist, it becomes a symlink to the dataset root, `<rate>`
being the folder name of the first clip's sample rate (16k, 22k, 32k, 44k, 48k, or e.g. 8k). Models running at
another rate read that folder and resample. A cross-validated task whose dataset lacks whole folds (a partial
download) is written with the folds present and a warning naming the missing ones.

The builders live with their tasks in `evar/tasks/` (one module per dataset family); `--help` lists what each
reads under `dataset_root`.
"""

from __future__ import annotations

import argparse
from typing import Optional

from .tasks.build import buildable_tasks, builders_help, make_metadata

__all__ = ['main', 'make_metadata']

_BUILDERS_INTRO = """\
Builders: what each reads under `dataset_root` -> label; split. "NEEDS --split_file" marks the datasets whose
authors publish no split (or publish it only on the web): the user supplies it.

"""
_SPLIT_FILE_HELP = """
A --split_file is a CSV with columns file_name,split (an EVAR metadata CSV works: extra columns are ignored;
file names match with or without folders and extensions), or a folder holding {train,valid,test}_filtered.txt
or {train,valid,test}.txt with one file name a line.
"""


def main(argv: Optional[list] = None) -> int:
    """Runs `python -m evar.metadata` with the command-line arguments `argv` (default: sys.argv[1:]); returns 0.

    Raises:
        EvarError: bad arguments or bad input (the command line prints it as one `Error:` line, exit status 1).
    """
    from .cli import ArgumentParser

    parser = ArgumentParser(
        prog='python -m evar.metadata', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Write a task\'s metadata CSV (file_name,label,split|fold) from its dataset as published.',
        epilog=_BUILDERS_INTRO + builders_help() + _SPLIT_FILE_HELP)
    parser.add_argument('task', help=f'one of: {", ".join(sorted(buildable_tasks()))}')
    parser.add_argument('dataset_root', help='the dataset folder as its publisher distributes it')
    parser.add_argument('--work_root', default=None, help='work folder (default: $EVAR_WORK, else work)')
    parser.add_argument('--out', default=None, help='CSV path (default: <work_root>/metadata/<task>.csv)')
    parser.add_argument('--split_file', default=None, help='split CSV or folder, for tasks with no published split')
    parser.add_argument('--no_link', action='store_true', help='do not link the audio under <work_root>/<rate>/')
    args = parser.parse_args(argv)
    make_metadata(args.task, args.dataset_root, work_root=args.work_root, out=args.out, split_file=args.split_file,
                  link=not args.no_link)
    return 0


if __name__ == '__main__':
    from .cli import module_main

    module_main(main)
