"""Scoring: answer extraction and the scorer table."""


def __getattr__(name: str):  # the flat module harness.scoring's names, as before the regroup
    from .._aliases import forward

    return forward(__name__, "scoring", name)
