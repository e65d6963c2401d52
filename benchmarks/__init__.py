"""Side-by-side benchmarks of geomjax against reference implementations."""
