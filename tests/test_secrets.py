"""An API key given with --api-key-env is sent to the server and written nowhere.

A random key `sk-test-PLANTED-...` is planted in an environment variable; `harness run --backend openai`
runs through the fault proxy (which checks, by hash, that the key really went out as the bearer token)
to the real vLLM server (without --api-key it accepts any key). Then every byte of the run folders,
the request cache folder and the CLI's stdout/stderr is searched for the key: it must appear nowhere.
run.json records the variable's NAME. The server is the one test_faults.py starts (one at a time).
"""
from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import pandas as pd
import pytest

from faultproxy import FaultProxy
from test_faults import _cli, vllm_server  # noqa: F401 - the shared server fixture

pytestmark = pytest.mark.server

VAR = "HARNESS_TEST_PLANTED_KEY"


@pytest.fixture(scope="module")
def secret_proxy(vllm_server):  # noqa: F811
    with FaultProxy(vllm_server.url) as p:
        yield p


def _leaks(key: str, paths: list[Path], texts: dict[str, str]) -> list[str]:
    """Where the key, or its random part alone, occurs: files (as bytes, also UTF-16) and texts."""
    needles = [key.encode(), key.split("PLANTED-")[1].encode(), key.encode("utf-16-le")]
    found = [str(p) for p in paths if p.is_file() and any(n in p.read_bytes() for n in needles)]
    found += [name for name, text in texts.items() if any(n.decode("latin-1") in text for n in needles[:2])]
    return found


def test_api_key_is_used_and_written_nowhere(secret_proxy, tmp_path, monkeypatch):
    key = f"sk-test-PLANTED-{secrets.token_hex(16)}"
    cache_dir = tmp_path / "request-cache"
    monkeypatch.setenv(VAR, key)
    monkeypatch.setenv("HARNESS_REQUEST_CACHE_DIR", str(cache_dir))
    common = ["run", "--backend", "openai", "--base-url", secret_proxy.url, "--api-key-env", VAR,
              "--task", "coin_flip", "--limit", "3"]
    runs = {  # name -> extra flags; two strategies in the first so the report writes pairs.csv too
        "no-cache": ["--strategy", "zero_shot", "--strategy", "few_shot", "--no-cache"],
        "cache-fill": ["--strategy", "zero_shot"],
        "cache-hit": ["--strategy", "zero_shot"],
    }
    texts: dict[str, str] = {}
    for name, extra in runs.items():
        out = tmp_path / name
        proc = _cli(*common, *extra, "--out", str(out), timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        texts[f"{name} stdout"], texts[f"{name} stderr"] = proc.stdout, proc.stderr
        meta = json.loads((out / "run.json").read_text())
        assert meta["engine"]["api_key_env"] == VAR and meta["status"] == "complete"
    assert hashlib.sha256(f"Bearer {key}".encode()).hexdigest() in secret_proxy.auth_digests  # it was sent

    written = {p.name for p in (tmp_path / "no-cache").iterdir()}
    assert {"run.json", "journal.jsonl", "predictions.parquet", "summary.csv", "report.html", "report.md",
            "pairs.csv"} <= written, written
    assert any(cache_dir.rglob("*.sqlite")), "the request cache was not written"
    hit = json.loads((tmp_path / "cache-hit" / "run.json").read_text())
    assert hit["cache"]["enabled"] and hit["cache"]["dir"] == str(cache_dir)
    assert pd.read_parquet(tmp_path / "cache-hit" / "predictions.parquet")["cached"].all()
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    print(f"\nsearched {len(files)} files and {len(texts)} outputs for the planted key")
    assert _leaks(key, files, texts) == []
