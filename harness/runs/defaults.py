"""The default suite: what `harness run` runs with no --task and no --strategy.

Generated tasks (no download) on which the bundled SmolLM2-135M-Instruct lands between about 30 % and
80 %, each with the strategies that show a difference there; self-consistency on one task (the maj@k
curve) and guided vs free decoding on one JSON task. Measured and budgeted in docs/default-suite.md;
sized to finish in about five minutes on 2 CPU cores (see README)."""
DEFAULT_SUITE: dict[str, tuple[str, ...]] = {
    "country_capital": ("zero_shot", "few_shot:k=3", "cot"),
    "larger_number": ("zero_shot", "few_shot:k=3", "cot", "self_consistency:k=5"),
    # the labels' log-likelihood three ways (generation, and chat log-likelihood uncalibrated, say "positive"
    # to every review: constant answers, issue 22; docs/default-suite.md, "Sentiment reworked")
    "sentiment": ("zero_shot:answer_mode=loglikelihood,format=completion",
                  "few_shot:k=4,answer_mode=loglikelihood,format=completion",
                  "zero_shot:answer_mode=loglikelihood,calibrate=true"),
    "contact_json": ("zero_shot", "zero_shot:guided=true"),
}
DEFAULT_TASKS = tuple(DEFAULT_SUITE)  # crossed with --strategy when only strategies are given
DEFAULT_STRATEGIES = ("zero_shot", "few_shot:k=3", "cot")  # crossed with --task when only tasks are given
DEFAULT_LIMIT = 50  # examples per task when `harness run` is given no --task and no --limit
