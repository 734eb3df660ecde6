"""Embed once, then train and test the head with several seeds in the same process (EVAR's 2pass runner).

    python 2pass_lineareval.py config/byola.yaml esc50 --repeat 3
"""

from evar.cli import run_cli


def main(config_file, task, options='', lr=None, hidden=(), standard_scaler=True, mixup=False, epochs=None,
         early_stop_epochs=None, unit_sec=None, repeat=3, seed=42, head='probe', work_root=None,
         results_dir='results', logs_dir='logs', device=None, bf16=False, progress=True):
    """Runs seeds SEED, SEED+1, ... (REPEAT of them) on cached embeddings; records every run and the mean +- std."""
    from pathlib import Path

    from evar.errors import EvarError
    from evar.lineareval import head_options, lineareval

    if int(repeat) < 1:
        raise EvarError(f'--repeat must be >= 1, got {repeat}.')
    lineareval(config_file, task, options=options, seeds=tuple(int(seed) + i for i in range(int(repeat))),
               head=head_options(lr, hidden, standard_scaler, mixup, epochs, early_stop_epochs, head),
               unit_sec=unit_sec, step='1pass', work_root=work_root, results_dir=Path(results_dir),
               logs_dir=Path(logs_dir), device=device, bf16=bf16, progress=progress)


if __name__ == '__main__':
    run_cli(main)
