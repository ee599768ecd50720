#!/bin/sh
# The executable vLLM's engine core is spawned with while the harness starts the engine
# (harness/backends/engine_log.py, own_session): it puts the process in a session of its own, so that a
# Ctrl-C at the terminal reaches the harness alone, which stops the engine cleanly; then it runs the real
# interpreter with multiprocessing's arguments. The engine's worker, spawned by the core, inherits the session.
exec "${HARNESS_ENGINE_PYTHON:?}" -I -S -c '
import os, sys
try:
    os.setsid()
except OSError:  # already a session or process group leader: stay where it is
    pass
os.execv(sys.executable, [sys.executable] + sys.argv[1:])' "$@"
