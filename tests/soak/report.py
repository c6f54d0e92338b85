"""What a soak run prints, and whether it passed."""

from __future__ import annotations

from tests.soak.lies import OUTCOMES
from tests.soak.run import EXIT_BOUND, Result
from tests.soak.watch import FD_MARGIN, RSS_FLOOR, RSS_MARGIN, Sample

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
LEVELS = ("WARNING", "ERROR", "CRITICAL")
SAMPLES = 5
"""Daemon log errors quoted in the report."""


def size(value: float) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def failures(result: Result) -> list[str]:
    """Why the run failed; empty when it passed."""
    tally, found = result.tally, list(result.problems)
    if tally.wrong_bytes:
        found.append(f"{tally.wrong_bytes} wrong bytes")
    if tally.early_ends:
        found.append(f"{tally.early_ends} reads met the end of file early")
    if tally.errors:
        found.append(f"errors other than EIO: {dict(tally.errors)}")
    if result.chaos.error:
        found.append(f"the chaos thread stopped: {result.chaos.error}")
    growth = result.growth
    if growth is not None and growth.judged and not growth.rss_ok:
        found.append("the daemon's RSS grew")
    if growth is not None and growth.judged and not growth.fds_ok:
        found.append("the daemon's open files grew")
    if tally.reads == 0:
        found.append("no read completed")
    return found


def lines(result: Result) -> list[str]:
    settings, tally = result.settings, result.tally
    drop = "on" if settings.drop_checksum else "off"
    out = [
        f"glacierfs soak: {settings.duration:.0f} s, {settings.readers} readers, "
        f"seed {settings.seed}, drop-checksum fault {drop}",
        _vault(result),
        f"reads:              {tally.reads}",
        f"bytes read:         {size(tally.bytes)} ({tally.bytes / settings.duration / MIB:.0f} "
        "MiB/s)",
        f"EIO:                {tally.eio_live + tally.eio_expired + tally.eio_lied} "
        f"(honest live jobs {tally.eio_live}, the expired job {tally.eio_expired}, "
        f"jobs lied about {tally.eio_lied}, archive files {tally.eio_files}); "
        f"archive files found gone {tally.files_gone}",
        _expiry(result),
        f"wrong bytes:        {tally.wrong_bytes} (in {tally.wrong_reads} reads){_blame(result)}",
        *[f"  {served}" for served in result.served],
        f"short answers:      {tally.short_reads} (read on: the rest or EIO); early end of file "
        f"{tally.early_ends} ({size(tally.missing_bytes)} missing)",
        f"other errors:       {dict(tally.errors) or 'none'}",
        _faults(result),
        f"flipped, unchecked: {result.unchecked_flips} answers with a flipped byte and no "
        "checksum (each must be refused)",
        *_lies(result),
        _daemon(result),
        *_memory(result),
        _exit(result),
        *_log(result),
    ]
    out += [f"  {sample}" for sample in tally.samples]
    found = failures(result)
    out += [f"problem: {problem}" for problem in found]
    out.append("result: FAIL" if found else "result: PASS")
    return out


def _blame(result: Result) -> str:
    kept = len(result.tally.wrong)
    if not kept:
        return ""
    return (
        f"; {result.explained} of the {kept} placed were brought by an answer with a flipped "
        "byte and no checksum"
    )


def _vault(result: Result) -> str:
    jobs = result.jobs
    archives = [j.size for j in jobs if j.kind == "archive" and not j.spare]
    ranged = next(j.size for j in jobs if j.kind == "range")
    listing = next(j.size for j in jobs if j.kind == "inventory")
    distinct = sum(archives) + listing
    return (
        f"vault:              {len(archives)} archive jobs ({size(min(archives))} to "
        f"{size(max(archives))}), a range job ({size(ranged)}), an inventory ({size(listing)}): "
        f"{size(distinct)}, {sum(j.spare for j in jobs)} spare jobs to lie about, "
        f"{len(result.files)} archive files read too; cache_size {size(result.cache_size)}"
    )


def _lies(result: Result) -> list[str]:
    """The lies told, by kind, and what the reads of the jobs lied about ended in."""
    lies = result.chaos.lies
    if lies is None:
        return ["lies told:          none (--no-lies)"]
    told = ", ".join(f"{kind} {count}" for kind, count in sorted(lies.told.items()))
    out = [
        f"lies told:          {sum(lies.told.values())} ({told}); {lies.lifted} lifted; "
        f"{len(lies.pool)} spare jobs"
    ]
    seen = result.tally.lied
    for kind in sorted({kind for kind, _ in seen}):
        ends = ", ".join(
            f"{outcome} {seen[kind, outcome]}"
            for outcome in (*OUTCOMES, "wrong bytes")
            if seen[kind, outcome]
        )
        out.append(f"  reads after {kind}: {ends}")
    return out


def _expiry(result: Result) -> str:
    tally = result.tally
    if result.expired is None:
        return "expired job:        none (the run ended before the expiry)"
    return (
        f"expired job:        {result.expired[:16]}...: after its expiry "
        f"{tally.served_after_expiry} reads served (from the cache), {tally.eio_expired} EIO, "
        f"{tally.gone_after_expiry} opens found it gone"
    )


def _faults(result: Result) -> str:
    struck = dict(result.counters.get("faults", {}))
    if result.expired is not None:
        struck["expiry"] = 1
    listed = ", ".join(f"{kind} {count}" for kind, count in sorted(struck.items()))
    chaos = result.chaos
    return (
        f"faults injected:    {sum(struck.values())} ({listed}); "
        f"{sum(chaos.added.values())} faults added, {chaos.removed} removed"
    )


def _daemon(result: Result) -> str:
    stats, counters = result.stats, result.counters
    output = counters.get("operations", {}).get("GetJobOutput", {})
    return (
        f"daemon:             {size(int(stats.get('bytes_served', 0)))} served to the kernel, "
        f"{stats.get('requests', '?')} GETs answered, "
        f"{size(int(stats.get('bytes_fetched', 0)))} fetched, {stats.get('retries', '?')} retries, "
        f"{stats.get('checksum_failures', '?')} checksum failures, "
        f"{stats.get('disk_cache_misses', '?')} disk cache misses; emulator: "
        f"{counters.get('requests', '?')} requests, {output.get('requests', '?')} Get Job Output"
    )


def _memory(result: Result) -> list[str]:
    growth = result.growth
    if growth is None or result.first is None:
        return ["daemon RSS/fds:     no samples"]

    def verdict(ok: bool) -> str:
        if not growth.judged:
            return "not judged (a run under a minute is all warm-up)"
        return "flat" if ok else "GREW"

    idle = result.idle or Sample(0, 0, 0)
    rule = (
        f"rule: end <= start + max({RSS_MARGIN:.0%}, {size(RSS_FLOOR)}) for RSS, "
        f"+ {FD_MARGIN} for fds; start = highest sample of the first fifth"
    )
    return [
        f"daemon RSS:         first {size(result.first.rss)}, start {size(growth.start.rss)}, "
        f"end {size(growth.end.rss)}, max {size(growth.max_rss)}, after the readers "
        f"{size(idle.rss)}: {verdict(growth.rss_ok)}",
        f"daemon open files:  first {result.first.fds}, start {growth.start.fds}, "
        f"end {growth.end.fds}, max {growth.max_fds}, after the readers {idle.fds}: "
        f"{verdict(growth.fds_ok)}",
        f"                    ({rule})",
    ]


def _exit(result: Result) -> str:
    if result.exit_time is None:
        return f"exit after unmount: not measured (bound {EXIT_BOUND:.0f} s)"
    return (
        f"exit after unmount: {result.exit_time:.2f} s (bound {EXIT_BOUND:.0f} s), "
        f"status {result.exit_code}"
    )


def _log(result: Result) -> list[str]:
    """The daemon log's tally, and the first traceback's last line: it names a bug."""
    levels = {level: sum(f" {level} " in line for line in result.log) for level in LEVELS}
    out = [
        f"daemon log:         {len(result.log)} lines, "
        + ", ".join(f"{count} {level}" for level, count in levels.items())
    ]
    errors = [line for line in result.log if " ERROR " in line or " CRITICAL " in line]
    out += [f"  {line[:240]}" for line in errors[:SAMPLES]]
    starts = [i for i, line in enumerate(result.log) if line.startswith("Traceback")]
    if starts:
        tail = next((line for line in result.log[starts[0] + 1 :] if not line.startswith(" ")), "")
        out.append(f"                    {len(starts)} tracebacks, the first ends: {tail}")
    return out
