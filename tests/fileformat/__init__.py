"""Tests of dialogctl/fileformat/ (the test tree mirrors the package)."""
