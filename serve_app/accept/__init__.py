"""Admission of an invocation before its task row is written: the sandbox gate (503 when the jail cannot be
applied). Imports `core` and `cluster` only."""
