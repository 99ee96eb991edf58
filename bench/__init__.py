"""Load benchmarks (``make bench``: ``python -m bench.run``) and the reliability tier
(``make test-reliability``: ``pytest bench/reliability``). See docs/ARCHITECTURE.md,
"Benchmarks and reliability"."""
