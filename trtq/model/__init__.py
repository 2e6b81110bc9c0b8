"""The ONNX model layer: loading (with external data), the graph index (producers, consumers,
constants, stored tensors), model copies and edits, the one ONNX Runtime session factory, and the
one runner face every CPU command runs models through (Polygraphy's loader/runner split).

It knows no config, image or cache: calibration, Q/DQ export, compare, tune and bench build on it.
"""
