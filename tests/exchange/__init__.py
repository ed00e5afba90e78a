"""Tests of dialogctl/exchange/ (the test tree mirrors the package)."""
