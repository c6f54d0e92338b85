"""How sizes and moments read in every command's output."""

from glacierfs.humane import short_size, size, utc


def test_sizes_scale_to_the_largest_unit_under_1024() -> None:
    assert size(0) == "0 B"
    assert size(1023) == "1023 B"
    assert size(1536) == "1.5 KiB"
    assert size(3 << 30) == "3.0 GiB"
    assert size(2048 << 40) == "2048.0 TiB"


def test_short_sizes_fit_a_column() -> None:
    assert short_size(512) == "512B"
    assert short_size(1536 << 20) == "1.5G"


def test_moments_are_in_utc() -> None:
    assert utc(0) == "1970-01-01 00:00 UTC"
    assert utc(86400 + 3600, "%m-%d %H:%M") == "01-02 01:00"
