"""The read path: from ``(job, offset, size)`` to bytes that are verified or refused.

- :mod:`.reader`: single flight per leaf, fetch and verify, the caches, hydrate.
- :mod:`.prefetch`: read-ahead for one open file.
- :mod:`.trust`: which job a cached leaf may serve, and whole-output verdicts.
"""
