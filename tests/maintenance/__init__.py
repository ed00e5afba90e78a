"""Tests of dialogctl/maintenance/ (the test tree mirrors the package)."""
