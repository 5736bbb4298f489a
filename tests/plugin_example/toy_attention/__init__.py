"""An example attention package for the LRA harness: sliding-window attention (toy_attention.window)."""
