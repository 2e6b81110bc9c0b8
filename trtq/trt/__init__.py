"""TensorRT integration: calibrators, engine builder, benchmark backend.

The only package that imports tensorrt and pycuda (the ``trt`` extra); import its modules lazily.
"""
