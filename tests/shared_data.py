"""Where the tests read the public evaluation sets: ../shared/data beside the repo (never copied in)."""
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
