"""Building blocks of fine-tuning: input augmentations (`augment`), optimisers and learning-rate schedules
(`optim`), the task network and the training loop's samplers and checkpoints (`network`, `checkpoint`)."""
