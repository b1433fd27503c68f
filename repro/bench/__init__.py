"""Benchmarks run by `make bench`: each module times the batched code path against the
reference loop it replaces, in one process, and checks both give the same results."""
