"""Tests of dialogctl/cli/ (the test tree mirrors the package)."""
