"""Build hook for the optional C decoder; everything else is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C compiler, no
Python headers) the install still succeeds and mqttids uses the pure-Python
decoder, which gives the same rows, only slower. The module records the
SHA-256 of the source it was built from, so that a stale build next to a
changed source is noticed (mqttids.capture.extract then uses the Python
decoder and says to rebuild).
"""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "src/mqttids/capture/_cdecoder.c"
DIGEST = hashlib.sha256((Path(__file__).parent / SOURCE).read_bytes()).hexdigest()

setup(
    ext_modules=[
        Extension(
            "mqttids.capture._cdecoder",
            sources=[SOURCE],
            define_macros=[("CDECODER_SOURCE_SHA256", f'"{DIGEST}"')],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra",
                                "-Wno-unused-parameter"],
            optional=True,
        )
    ],
)
