"""Builds roadrunner's optional compiled modules; each falls back to pure Python.

- The nghttp2 HTTP/2 engine (roadrunner.protocols.http2._nghttp2, Cython): without a C compiler,
  Cython or libnghttp2's headers (Debian: libnghttp2-dev), HTTP/2 is served on h2.
- The hot HTTP/1.1, HTTP/2 and ASGI modules (roadrunner/compiled.py: MODULES), compiled by mypyc
  from their own typed source: without mypy or a C compiler, they run as the .py files they are.

ROADRUNNER_NO_EXTENSIONS=1 builds neither.
"""

import os
import runpy
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

WARNING = (
    "WARNING: roadrunner's nghttp2 HTTP/2 engine was not built ({reason}); installing without "
    "it, HTTP/2 runs on the pure-Python h2 engine. Install a C compiler and libnghttp2-dev "
    "(the nghttp2 headers) to build it."
)
MYPYC_WARNING = (
    "WARNING: roadrunner's mypyc-compiled modules were not built ({reason}); installing them as "
    "pure Python (slower per request). Install mypy and a C compiler to build them."
)
NGHTTP2 = "roadrunner.protocols.http2._nghttp2"
COMPILED = runpy.run_path(os.path.join("roadrunner", "compiled.py"))


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed compile in one line and installs without the module.

    The mypyc modules are all or nothing: they share one library, so when any of them fails,
    none is kept. After a full mypyc build, the SHA-256 of each source is written beside them
    (roadrunner/_compiled_sources.py), so that an edited source is not shadowed by a stale build.
    """

    failed: set[str]
    mypyc_failure: str  # why the first mypyc module failed

    def run(self) -> None:
        self.failed = set()
        self.mypyc_failure = ""
        try:
            super().run()
        except Exception as exc:  # no compiler at all (setuptools' CCompilerError / OSError)
            self.mypyc_failure = failure_reason(exc)
            print(WARNING.format(reason=self.mypyc_failure), file=sys.stderr)
            self.failed.update(ext.name for ext in self.extensions)
        mypyc = [ext for ext in self.extensions if ext.name != NGHTTP2]
        if not mypyc:
            return
        if self.failed & {ext.name for ext in mypyc}:
            for ext in mypyc:
                built = self.get_ext_fullpath(ext.name)
                if os.path.exists(built):
                    os.remove(built)
            print(MYPYC_WARNING.format(reason=self.mypyc_failure), file=sys.stderr)
            return
        self.write_sources()

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # no compiler (an OSError), or it failed: nghttp2/nghttp2.h missing
            self.failed.add(ext.name)
            if ext.name == NGHTTP2:
                print(WARNING.format(reason=failure_reason(exc)), file=sys.stderr)
            else:
                self.mypyc_failure = self.mypyc_failure or failure_reason(exc)
                print(f"mypyc module {ext.name}: {exc}", file=sys.stderr)

    def write_sources(self) -> None:
        sources = {m: COMPILED["source_digest"](COMPILED["source_path"](m, ".")) for m in COMPILED["MODULES"]}
        text = (
            '"""Written by setup.py: the SHA-256 of the source each mypyc module was built from."""\n\n'
            f"SOURCES = {sources!r}\n"
        )
        name = COMPILED["BUILD_INFO"]
        # Beside the extensions: the source tree when building in place, else build_lib.
        target = os.path.join(os.path.dirname(self.get_ext_fullpath(name)), name.rpartition(".")[2] + ".py")
        with open(target, "w") as file:
            file.write(text)


def failure_reason(exc: Exception) -> str:
    """Why an extension did not build, for the one-line warning."""
    cause: BaseException | None = exc
    while cause is not None:  # setuptools wraps what the compiler's run raised in a CompileError
        if isinstance(cause, OSError):
            return f"the C compiler could not be run: {cause}"  # so there is no compiler message
        if isinstance(cause, subprocess.CalledProcessError):
            return f"the compiler exited with status {cause.returncode}, see its message above"
        cause = cause.__context__
    return f"compiling it failed: {exc}; see the compiler's message above"


def nghttp2_extension() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:
        print(WARNING.format(reason="Cython is not installed"), file=sys.stderr)
        return []
    ext = Extension(
        NGHTTP2,
        ["roadrunner/protocols/http2/_nghttp2.pyx"],
        depends=[
            "roadrunner/protocols/http2/_nghttp2_api.pxd",
            "roadrunner/protocols/http2/_nghttp2_callbacks.pxi",
        ],
        libraries=["nghttp2"],
    )
    return cythonize([ext], language_level=3, quiet=True)


def mypyc_extensions() -> list[Extension]:
    try:
        from mypyc.build import mypycify
    except ImportError:
        print(MYPYC_WARNING.format(reason="mypy is not installed"), file=sys.stderr)
        return []
    paths = [COMPILED["source_path"](module, ".") for module in COMPILED["MODULES"]]
    # The build environment lacks most runtime dependencies, so mypy may report errors in
    # modules the compiled ones import that `make typecheck` (in the venv) does not: only the
    # compiled modules' own errors stop the build.
    options = ["--follow-imports=silent"]
    try:
        return list(mypycify(options + paths, opt_level="3", debug_level="0", group_name=COMPILED["GROUP"]))
    except BaseException as exc:  # mypy's type check failed (mypyc exits) or mypyc itself did
        print(MYPYC_WARNING.format(reason=f"mypyc failed: {exc!r}"), file=sys.stderr)
        return []


def extensions() -> list[Extension]:
    if os.environ.get("ROADRUNNER_NO_EXTENSIONS"):
        print(WARNING.format(reason="ROADRUNNER_NO_EXTENSIONS is set"), file=sys.stderr)
        print(MYPYC_WARNING.format(reason="ROADRUNNER_NO_EXTENSIONS is set"), file=sys.stderr)
        return []
    return nghttp2_extension() + mypyc_extensions()


# pip's backend (setuptools.build_meta) runs this file as __main__; tests import its classes.
if __name__ == "__main__":
    setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
