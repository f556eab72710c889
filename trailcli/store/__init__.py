"""The durable log store: the one package that knows the on-disk layout (docs/storage.md)."""
