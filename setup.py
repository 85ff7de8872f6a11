"""Compile ext/*.pyx into extension modules inside the mpraster package."""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        f"mpraster.{pyx.stem}",
        [str(pyx)],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for pyx in sorted(Path("ext").glob("*.pyx"))
]

# ext/_pixel.pxd (shared fused types) is found on the include path.
setup(
    ext_modules=cythonize(
        extensions, include_path=["ext"], compiler_directives={"language_level": "3"}
    )
)
