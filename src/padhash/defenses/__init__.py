"""Defenses: on the query (preprocess), the training set (spectral signatures), the training loop (DP noise),
and the trained model (fine-pruning)."""
