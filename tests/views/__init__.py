"""Tests of dialogctl/views/ (the test tree mirrors the package)."""
