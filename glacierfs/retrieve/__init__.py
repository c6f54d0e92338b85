"""``glacierfs retrieve``: choose archives, plan and pace their retrieval, save the outputs.

One concern per module: :mod:`.selection` (archives from an inventory, by the names
the mount shows), :mod:`.pricing` (the dated price table), :mod:`.pacing` (daily caps
and aligned range jobs), :mod:`.coverage` (what the cache and live jobs already hold),
:mod:`.plan` (what a run would do and cost) are pure; :mod:`.state` (what was
requested, kept with the cache), :mod:`.delivered` (archives delivered or released),
:mod:`.cacheview` (the cache index, read-only),
:mod:`.source` (where the inventory comes from), :mod:`.save` (outputs into the cache,
in-process or through a mount), :mod:`.follow` (the unattended loop) and
:mod:`.command` (the command line) do the I/O.
"""
