"""The default suite: the built-in generated tasks x {zero_shot, few_shot, cot}.

Sized to finish in about five minutes on 2 CPU cores with the bundled model (see README)."""
DEFAULT_TASKS = ("coin_flip", "last_letter_concat", "multistep_arithmetic", "person_json")
DEFAULT_STRATEGIES = ("zero_shot", "few_shot:k=3", "cot")
DEFAULT_LIMIT = 50  # examples per task when `harness run` is given no --task and no --limit
