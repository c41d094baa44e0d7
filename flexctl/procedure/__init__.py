"""The procedure language: YAML procedures, safe expressions and durations."""
