"""Benchmarks that print figures: step time against bare PyTorch, LARS, the bank, the data path, and
every method's quality at one budget. They drive Ray Train themselves, like the entry points."""
