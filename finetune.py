"""Fine-tuning of an audio representation on a task (EVAR-compatible command line; `evar finetune`).

    python finetune.py config/byola.yaml esc50 --lr=0.001 --epochs=50 --seed=42

Multi-GPU: torchrun --nproc_per_node N finetune.py ... . Flags: python finetune.py --help.
"""

from evar.cli import script

if __name__ == '__main__':
    script('finetune')
