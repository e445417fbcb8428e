"""EdnaML's benchmark: `ednaml fit` beside the same run written by hand in Lightning and in plain PyTorch."""
