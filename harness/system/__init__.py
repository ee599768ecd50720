"""Process plumbing used by runs/ and by `harness serve` alike: the watchdog, signals, the process tree,
and where the harness keeps its caches. Imports nothing above records/errors."""
