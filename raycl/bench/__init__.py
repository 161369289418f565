"""Benchmarks that print figures, each against a reference measured in the same run: step time
against bare PyTorch, LARS against SGD, the bank, the data path and linear evaluation against
pre-training. They drive Ray Train themselves, like the entry points."""
