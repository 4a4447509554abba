"""The GPT, its tokenizer, kernels, decoding engine and checkpoints."""
