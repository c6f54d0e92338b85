"""A local Amazon S3 Glacier (vault API, 2012-06-01) for tests, the demo and benchmarks.

It is a second implementation of the API, written from the API reference and
``GLACIER-NOTES.md``, not from the daemon: the two share only the tree hash, so a
misreading in one shows up as a failing test against the other. botocore talks to
it unmodified through ``endpoint_url``. See ``python -m glacierfs.emulator --help``
and :mod:`glacierfs.emulator.server` for the admin endpoint.
"""
