"""Tests of dialogctl/disk/ (the test tree mirrors the package)."""
