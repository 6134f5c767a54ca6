"""instances models."""
