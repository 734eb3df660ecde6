"""Linear evaluation of an audio representation on a task (EVAR-compatible command line).

    python lineareval.py config/byola.yaml esc50 --options='batch_size=64' --seed=42 --hidden='(512,)'
"""

from evar.cli import run_cli


def main(config_file, task, options='', seed=42, lr=None, hidden=(), standard_scaler=True, mixup=False, epochs=None,
         early_stop_epochs=None, unit_sec=None, step='1pass', head='probe', work_root=None, results_dir='results',
         logs_dir='logs', device=None, bf16=False, progress=True):
    """Embeds TASK's clips with the model of CONFIG_FILE (cached), trains a probe head and appends the score to
    results/scores.csv.

    Args:
        config_file: model YAML (config/<model>.yaml).
        task: a built-in task name (esc50, fsdd, demo, ...) or a task YAML (keys metadata, data, unit_sec, ...).
        options: config overrides 'key=value,+new_key=value' (values parsed as YAML scalars or lists).
        seed: random seed of the head's training.
        lr: head learning rate (default: the config's lr_lineareval).
        hidden: hidden layer sizes, e.g. '(512,)' for an MLP head; () is a linear probe.
        step: 1pass | 2pass_1_precompute_only | 2pass_2_train_test.
        head: probe (EVAR protocol) or logreg (L2 logistic regression, strength chosen on validation).
        work_root: folder with metadata/, <16k|...>/ audio and cache/ (default $EVAR_WORK or work).
        device: cpu or cuda (default: cuda when available); bf16: bf16 autocast for the model on GPU.
    """
    from pathlib import Path

    from evar.lineareval import head_options, lineareval

    lineareval(config_file, task, options=options, seeds=(int(seed),),
               head=head_options(lr, hidden, standard_scaler, mixup, epochs, early_stop_epochs, head),
               unit_sec=unit_sec, step=step, work_root=work_root, results_dir=Path(results_dir),
               logs_dir=Path(logs_dir), device=device, bf16=bf16, progress=progress)


if __name__ == '__main__':
    run_cli(main)
