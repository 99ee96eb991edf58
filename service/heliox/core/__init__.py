"""Cross-cutting infrastructure: config, db, redis, logging, errors, middleware."""
