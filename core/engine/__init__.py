"""The engine: the one writer of the LMDB environment (group commit, recovery,
checkpoints), the admin context that cold ops build in, their results, the
configuration with every limit, the LMDB databases and hot backup.

Nothing outside core/ imports this package directly: `core` re-exports its public names."""
