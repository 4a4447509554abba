"""Training: the shared loop, optimizers, pretraining and finetuning."""
