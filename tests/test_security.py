"""Templates from other people run in Jinja's sandbox; paths cannot escape their folders."""
from __future__ import annotations

import os

import pytest

from harness.errors import ConfigError, TemplateError
from harness.runs.results import check_run_id
from harness.task.templates import load_template

PAYLOADS = [
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('id').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ question.__class__.__init__.__globals__ }}",
    "{{ question|attr('__class__') }}",
    "{{ range(10**9)|list }}",
    "{{ config.items() }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_escape_payloads_are_refused_with_a_clear_error(tmp_path, payload):
    (tmp_path / "evil.j2").write_text("{% block input %}" + payload + "{% endblock %}")
    tpl = load_template("evil.j2", [tmp_path])
    with pytest.raises(TemplateError) as info:
        tpl.render({"question": "q"})
    line = info.value.one_line()
    assert "\n" not in line and str(tmp_path / "evil.j2") in line
    assert "uid=" not in line


def test_symlinked_template_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.j2").write_text("{% block input %}secret{% endblock %}")
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    os.symlink(outside / "secret.j2", prompts / "link.j2")
    with pytest.raises(TemplateError, match="symbolic link"):
        load_template("link.j2", [prompts])
    (prompts / "inc.j2").write_text('{% block input %}{% include "link.j2" %}{% endblock %}')
    with pytest.raises(TemplateError, match="symbolic link"):
        load_template("inc.j2", [prompts]).render({})


@pytest.mark.parametrize("name", ["../x.j2", "/etc/passwd", "a/../../x.j2"])
def test_template_names_cannot_leave_the_folder(tmp_path, name):
    with pytest.raises(TemplateError):
        load_template(name, [tmp_path])


@pytest.mark.parametrize("run_id", ["../x", "/abs", "a/b", "..", ".hidden", ""])
def test_run_ids_cannot_escape(run_id):
    with pytest.raises(ConfigError):
        check_run_id(run_id)


def test_task_names_cannot_escape():
    from harness.task.tasks import load_task

    with pytest.raises(ConfigError):
        load_task("..%2Fevil")
    with pytest.raises(ConfigError):
        load_task("../../etc/passwd.yaml")
