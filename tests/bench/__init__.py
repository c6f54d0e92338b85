"""`make bench`: glacierfs against the tools people use today, side by side in one run."""
