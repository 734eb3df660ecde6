"""`python -m evar COMMAND ...`, the same as the `evar` console command."""

from .cli import entry

if __name__ == '__main__':
    entry()
