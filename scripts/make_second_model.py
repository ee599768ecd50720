"""Make a second local model for multi-model runs without any download: the bundled SmolLM2-135M-Instruct
(bf16) with a chat template that leaves out SmolLM's default system prompt ("You are a helpful AI
assistant named SmolLM ..."). Same weights (hard links where the file system allows, else copies), other
prompts, so its answers differ. Prints the folder.

    python scripts/make_second_model.py            # ~/.cache/harness/models/SmolLM2-135M-Instruct-nosys
    harness run --task coin_flip --model bundled --model ~/.cache/harness/models/SmolLM2-135M-Instruct-nosys
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from harness.backends.models import bundled_model_dir

NAME = "SmolLM2-135M-Instruct-nosys"
TEMPLATE = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
            "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def make(dest: Path | None = None) -> Path:
    src = Path(bundled_model_dir())
    dest = dest or src.parent / NAME
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "chat_template.jinja" and not (dest / f.name).exists():
            try:
                os.link(f, dest / f.name)
            except OSError:
                shutil.copy2(f, dest / f.name)
    (dest / "chat_template.jinja").write_text(TEMPLATE, encoding="utf-8")
    return dest


if __name__ == "__main__":
    print(make(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
