"""``make soak``: many readers through a real mount while the emulator misbehaves at random.

Run as ``python -m tests.soak --duration 10m`` (``make soak DURATION=10m``). The driver
starts an emulator and a glacierfs daemon of its own, seeds a vault (archive jobs from
1 KiB to 64 MiB, a range job, an inventory, two spare jobs), squeezes the disk cache
to a third of the bytes, and then, for the whole duration:

* readers (threads) open job files and archive files (``archives/soak/N-SIZE.bin``)
  and read at random offsets or sequentially, and compare every byte with the source;
* a chaos thread adds and removes emulator faults at random rates (every kind the
  emulator has), expires one job part way through, and tells lies about two spare
  jobs' records (:mod:`tests.soak.lies`): their reads may also give the bytes their
  record claimed, ENOENT, or EIO, never other bytes;
* a watcher samples the daemon's RSS and open files.

At the end it stops the readers, unmounts, times the daemon's exit, and prints what
it saw, with the place of each wrong byte matched against the emulator's request log
(:mod:`tests.soak.blame`). Wrong bytes, an early end of file, any error but EIO (or a
vanished expired job), a growing daemon or a slow exit make the exit status non-zero.
Everything it started is stopped by PID, even on Ctrl-C.
"""
