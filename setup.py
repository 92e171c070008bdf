"""The one compiled part: the x86 int8 products (AVX2, AVX-512 VNNI; ``lvpnet.model.exact_mm``). Optional:
where it does not build (no C compiler), lvpnet runs without it, exact and slower on CPUs without VNNI."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("lvpnet.model._x86mm", ["src/lvpnet/model/_x86mm.c"], optional=True)])
