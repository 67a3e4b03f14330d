"""Scoring a device model on what it never saw: held-out blocks (``testset``, ``blocks``) and whole networks
(``selection``: zoo, NNI hub samples, HF implementations; ``networks``: each measured end to end)."""
