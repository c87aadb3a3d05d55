"""Operator tools: verify_capture, load_test, status (shared code in _common)."""
