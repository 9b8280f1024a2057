"""Builds the optional nghttp2 HTTP/2 engine (roadrunner.protocols.http2._nghttp2).

Without a C compiler, Cython or libnghttp2's headers (Debian: libnghttp2-dev), or with
ROADRUNNER_NO_EXTENSIONS=1, roadrunner installs without it and serves HTTP/2 on h2.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

WARNING = (
    "WARNING: roadrunner's nghttp2 HTTP/2 engine was not built ({reason}); installing without "
    "it, HTTP/2 runs on the pure-Python h2 engine. Install a C compiler and libnghttp2-dev "
    "(the nghttp2 headers) to build it."
)


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed compile in one line and installs without the module."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all (setuptools' CCompilerError / OSError)
            print(WARNING.format(reason=exc), file=sys.stderr)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception:  # compile or link failure: e.g. nghttp2/nghttp2.h missing
            reason = "compiling it failed, see the compiler's message above"
            print(WARNING.format(reason=reason), file=sys.stderr)


def extensions() -> list[Extension]:
    if os.environ.get("ROADRUNNER_NO_EXTENSIONS"):
        print(WARNING.format(reason="ROADRUNNER_NO_EXTENSIONS is set"), file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print(WARNING.format(reason="Cython is not installed"), file=sys.stderr)
        return []
    ext = Extension(
        "roadrunner.protocols.http2._nghttp2",
        ["roadrunner/protocols/http2/_nghttp2.pyx"],
        depends=[
            "roadrunner/protocols/http2/_nghttp2_api.pxd",
            "roadrunner/protocols/http2/_nghttp2_callbacks.pxi",
        ],
        libraries=["nghttp2"],
    )
    return cythonize([ext], language_level=3, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
