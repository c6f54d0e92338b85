"""Fixtures shared by the test suite live in tests/support (pytest plugins)."""

pytest_plugins = [
    "tests.support.mount",
    "tests.support.emulator",
    "tests.support.liar",
    "tests.support.checklogs",
    "pytester",
]
