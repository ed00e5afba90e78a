"""Tests of dialogctl/journal/ (the test tree mirrors the package)."""
