"""Ray Train: the launcher, the worker loop, checkpoints and the BankServer (Ray is imported by the modules
that start or join a cluster, not by this package)."""
