"""``trtq doctor``: what this machine has, and proof that trtq's paths work on it.

The GPU checks here are the ones tests/test_gpu.py runs, so the container's test suite and a
user's first command exercise the same code on the same tiny built-in model.
"""
