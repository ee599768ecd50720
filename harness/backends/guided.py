"""Output types -> the engine's constraint, for every backend (one kind check, one Outlines table).

An `OutputType` (records.py) is "json" (a JSON schema), "choice" (a list of strings) or "regex".
Outlines' type adapters do the translation, so a choice list becomes the same regex on every backend:

    structured_outputs(t)   vLLM, offline (`StructuredOutputsParams(**kw)`) and server
                            (`extra_body={"structured_outputs": kw}`): {"json": schema} / {"regex": ...}
    response_format(t)      the OpenAI API: {"response_format": {"type": "json_schema", ...}} (JSON only)
    json_schema(t, target)  a backend that takes a schema itself (LangChain's with_structured_output)

>>> structured_outputs(OutputType("choice", '["A", "B"]'))
{'regex': '(A|B)'}
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..records import OutputType

KINDS = ("json", "choice", "regex")

# where only JSON schemas can be constrained: the text of the row's error, and the fix
JSON_ONLY = {
    "openai": ("the OpenAI API (it only takes JSON schemas)", "use a vLLM server (--structured vllm), or guided=false"),
    "langchain": ("the langchain backend (only JSON schemas, via with_structured_output)", "use guided=false"),
}


def check_kind(output_type: OutputType) -> None:
    if output_type.kind not in KINDS:
        raise ConfigError(f"unknown output type kind '{output_type.kind}'", field="output_type",
                          fix="use 'json', 'choice' or 'regex'")


def unsupported(output_type: OutputType, target: str) -> str | None:
    """Why `target` cannot constrain this output type (None when it can)."""
    check_kind(output_type)
    if target in JSON_ONLY and output_type.kind != "json":
        return f"{output_type.kind} constraints are not supported on {JSON_ONLY[target][0]}"
    return None


def outlines_type(output_type: OutputType) -> Any:
    """The Outlines type of an output type (raises ImportError without Outlines)."""
    from typing import Literal

    from outlines.types import JsonSchema, Regex

    value = output_type.value
    return {"json": lambda: JsonSchema(value), "regex": lambda: Regex(value),
            "choice": lambda: Literal[tuple(value)]}[output_type.kind]()


def structured_outputs(output_type: OutputType) -> dict[str, Any]:
    """Keyword arguments of vLLM's `StructuredOutputsParams` (offline engine and server alike).

    Outlines' vLLM type adapter does the translation (JSON schema -> {"json": dict}; regex and choice
    lists -> {"regex": ...}); if Outlines is missing or refuses the type, the arguments are built
    directly (json= / choice= / regex=).
    """
    check_kind(output_type)
    try:
        from outlines.models.vllm_offline import VLLMOfflineTypeAdapter

        kwargs = VLLMOfflineTypeAdapter().format_output_type(outlines_type(output_type))
        if kwargs:
            return kwargs
    except (ImportError, TypeError, ValueError, KeyError):
        pass
    return {output_type.kind: output_type.value}


def response_format(output_type: OutputType) -> dict[str, Any]:
    """Request fields for the OpenAI API: {"response_format": {"type": "json_schema", ...}}."""
    schema = json_schema(output_type, "openai")
    try:
        from outlines.models.openai import OpenAITypeAdapter
        from outlines.types import JsonSchema

        return OpenAITypeAdapter().format_output_type(JsonSchema(schema))
    except ImportError:
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "output", "strict": True, "schema": schema}}}


def json_schema(output_type: OutputType, target: str) -> dict[str, Any]:
    """The JSON schema of a "json" output type; ConfigError naming `target` for other kinds."""
    reason = unsupported(output_type, target)
    if reason:
        raise ConfigError(reason, field="output_type", fix=JSON_ONLY[target][1])
    return output_type.value
