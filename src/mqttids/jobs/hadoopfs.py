"""Files at any URI Spark can reach (local path, file://, gs://, hdfs://), through Hadoop.

The jobs run on clusters where the driver's own disk is not where data lives,
so every file they touch beyond Spark's readers and writers goes through the
Hadoop FileSystem of the running Spark session: the same code reads a local
file in tests and a Cloud Storage object on Dataproc. Nothing here copies a
whole file into Python; checksums are computed inside the JVM.
"""

from __future__ import annotations

import os
import re

from mqttids.errors import InputNotFoundError

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def absolute_uri(uri: str) -> str:
    """``uri`` with a relative local path made absolute against the current directory.

    A relative path would otherwise be resolved by each executor against its
    own working directory; URIs with a scheme are returned unchanged.
    """
    text = os.fspath(uri)
    if _SCHEME.match(text) and not re.match(r"^[a-zA-Z]:[\\/]", text):
        return text
    return os.path.abspath(text)


def _fs_path(spark, uri: str):
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(absolute_uri(uri))
    return path.getFileSystem(spark._jsc.hadoopConfiguration()), path


def qualify(spark, uri: str) -> str:
    """The fully qualified form of ``uri`` (``/data/x.csv`` -> ``file:/data/x.csv``)."""
    fs, path = _fs_path(spark, uri)
    return fs.makeQualified(path).toString()


def exists(spark, uri: str) -> bool:
    fs, path = _fs_path(spark, uri)
    return bool(fs.exists(path))


def _status(spark, uri: str):
    fs, path = _fs_path(spark, uri)
    if not fs.exists(path):
        raise InputNotFoundError(f"{uri} does not exist: give the path or URI of an existing "
                                 "file (local path, file://, gs:// or hdfs://)")
    return fs, path, fs.getFileStatus(path)


def file_size(spark, uri: str) -> int:
    """The size in bytes of the file at ``uri``; a folder or a missing file is an error."""
    _, _, status = _status(spark, uri)
    if status.isDirectory():
        raise InputNotFoundError(f"{uri} is a folder: give a file")
    return int(status.getLen())


def sha256(spark, uri: str) -> str:
    """The SHA-256 of the file's bytes, in hex, computed in the JVM as it streams by."""
    fs, path, _ = _status(spark, uri)
    stream = fs.open(path)
    try:
        return str(spark._jvm.org.apache.commons.codec.digest.DigestUtils.sha256Hex(stream))
    finally:
        stream.close()


def read_head(spark, uri: str, limit: int = 1 << 16) -> bytes:
    """Up to ``limit`` bytes from the start of the file (a header line, a small file)."""
    fs, path, _ = _status(spark, uri)
    stream = fs.open(path)
    try:
        return bytes(stream.readNBytes(limit))
    finally:
        stream.close()


def write_bytes(spark, uri: str, data: bytes) -> str:
    """Write (or replace) a small file at ``uri``; returns its qualified URI."""
    fs, path = _fs_path(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()
    return fs.makeQualified(path).toString()


def delete(spark, uri: str) -> bool:
    """Remove a file or a folder with everything in it; False when there was nothing."""
    fs, path = _fs_path(spark, uri)
    return bool(fs.delete(path, True))


def list_names(spark, uri: str) -> list[str]:
    """Names of the entries of a folder, sorted; empty when the folder does not exist."""
    fs, path = _fs_path(spark, uri)
    if not fs.exists(path):
        return []
    return sorted(str(s.getPath().getName()) for s in fs.listStatus(path))


def join(base: str, *names: str) -> str:
    """``base/name/...`` for URIs and paths alike, without doubling slashes."""
    out = base.rstrip("/")
    for name in names:
        out = f"{out}/{name.strip('/')}"
    return out


def read_bytes(spark, uri: str) -> bytes:
    """The whole content of a small file (a ledger row, a result table)."""
    fs, path, _ = _status(spark, uri)
    stream = fs.open(path)
    try:
        return bytes(stream.readAllBytes())
    finally:
        stream.close()


def rename(spark, src: str, dst: str) -> None:
    """Move a file into place; the destination's folder is created when missing."""
    fs, source = _fs_path(spark, src)
    _, target = _fs_path(spark, dst)
    fs.mkdirs(target.getParent())
    if not fs.rename(source, target):
        raise OSError(f"could not move {src} to {dst}")


def expand(spark, uri: str) -> list[str]:
    """The files a URI names: itself, or the matches of a glob (``gs://b/data/*.csv``), sorted."""
    fs, path = _fs_path(spark, uri)
    matches = fs.globStatus(path)
    if matches is None or len(matches) == 0:
        raise InputNotFoundError(f"{uri}: no such file; check the path or URI "
                                 "(local path, file://, gs:// or hdfs://)")
    out = []
    for status in matches:
        if status.isDirectory():
            raise InputNotFoundError(f"{status.getPath().toString()} is a folder; name the "
                                     "files in it instead (for example FOLDER/*.csv)")
        out.append(str(status.getPath().toString()))
    return sorted(out)


def is_local(spark, uri: str) -> bool:
    """True when ``uri`` lives on this machine's own file system (file: or a bare path)."""
    return qualify(spark, uri).startswith("file:")
