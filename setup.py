"""Build hook for the optional C decoder; everything else is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C compiler, no
Python headers) the install still succeeds and mqttids uses the pure-Python
decoder, which gives the same rows, only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mqttids.capture._cdecoder",
            sources=["src/mqttids/capture/_cdecoder.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ],
)
