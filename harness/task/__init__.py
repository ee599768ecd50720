"""Tasks: the task file and its schema, data loading, item generators, prompt templates, exemplars."""
