"""Request traces: the record the ingress builds, the database tables, the store and the
crash-safe batching writer (journal on disk, batches off the request path)."""
