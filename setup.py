"""The one compiled part: the AVX2 int8 product (``lvpnet.model.exact_mm``). Optional: where it does
not build (no C compiler), lvpnet runs without it, exact and slower on CPUs without VNNI."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("lvpnet.model._avx2mm", ["src/lvpnet/model/_avx2mm.c"], optional=True)])
