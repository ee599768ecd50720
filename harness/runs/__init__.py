"""Runs: the runner, units and their identity, the run folder (results), processes and signals, the latency probe, the default suite, and the library entry point run()."""
