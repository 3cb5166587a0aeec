# pytest-benchmark cases: run with `python3 -m pytest bench --benchmark-enable`.
