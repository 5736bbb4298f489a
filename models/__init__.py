"""The things under test: the encoder and the attention registry (plain PyTorch)."""
