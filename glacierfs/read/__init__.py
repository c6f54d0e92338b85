"""The read path: from ``(job, offset, size)`` to bytes that are verified or refused.

- :mod:`.reader`: the one door (read, hydrate, what is known of a job), built on:
- :mod:`.flights`: single flight, one request in progress per leaf;
- :mod:`.loader`: what a flight does: a leaf from disk, or a run fetched and stored;
- :mod:`.fetch`: the retried GET, leaf hashes and the header check;
- :mod:`.budget`: the bound on bytes requested and not yet stored;
- :mod:`.settings`: request sizes, connections, strictness (config's defaults);
- :mod:`.prefetch`: read-ahead for one open file;
- :mod:`.trust`: which job a cached leaf may serve, and how a job's output is judged;
- :mod:`.ledger`: the verdicts and problems of jobs, kept with the cache.
"""
