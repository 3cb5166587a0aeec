"""Build logic for the compiled core; everything else lives in pyproject.toml.

MMS_DEBUG=1 builds with line tracing, an annotated HTML listing of the hot path and the
fast path's debug checks (the C macro MMS_DEBUG: points == sum of lots after each op,
record room before each record write; a failed check aborts). A release build has none
of them. README.md ("Debug build") says how to run it.
"""
import importlib.util
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("MMS_DEBUG") == "1"

# The sources' hash, compiled in as _fastpath.SOURCE_SHA (core/_source_hash.py says why).
_spec = importlib.util.spec_from_file_location(
    "_source_hash", os.path.join(os.path.dirname(os.path.abspath(__file__)), "core", "_source_hash.py"))
_source_hash = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_source_hash)
source_sha = _source_hash.source_sha()
tally_sha = _source_hash.source_sha(sources=_source_hash.TALLY_SOURCES)

extensions = [
    Extension(
        "core._fastpath",
        ["core/_fastpath.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("MMS_SOURCE_SHA", f'"{source_sha}"')]
        + ([("CYTHON_TRACE_NOGIL", "1"), ("MMS_DEBUG", "1")] if debug else []),
        extra_compile_args=["-O3"] if not debug else ["-O0", "-g"],
    ),
    # The rollup tailer's per-record loops (core/engine/rollups.py, rollup_lots.py).
    Extension(
        "core.engine._tally",
        ["core/engine/_tally.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("MMS_SOURCE_SHA", f'"{tally_sha}"')],
        extra_compile_args=["-O3"] if not debug else ["-O0", "-g"],
    ),
    # A journal block packed for replication's wire (core/engine/replication.py, PUT_PACKED).
    Extension(
        "core.engine._framepack",
        ["core/engine/_framepack.pyx"],
        extra_compile_args=["-O3"] if not debug else ["-O0", "-g"],
    ),
    # The server's wire encoding of result columns (server/rpc/codec.py, results_bytes).
    Extension(
        "server.rpc._wire",
        ["server/rpc/_wire.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"] if not debug else ["-O0", "-g"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "linetrace": debug,
        },
        annotate=debug,
    ),
)
