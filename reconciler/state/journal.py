"""The journal file of the local backend: its line format and a file that appends whole records
or none. File I/O in ``JournalFile`` only; the line codec is pure.

One record per line: its JSON (keys sorted, compact, ASCII) with a CRC-32 of exactly those bytes
appended as a last field, ``{"at":"…","type":"end","crc32":"1a2b3c4d"}``. A line stays JSON (jq
reads it), and the checksum is checked on the bytes, without encoding the record again. A line
without a ``crc32`` field was written before checksums existed and is read as it is, as long as no
checksummed line comes before it. Only a last line without its newline is a torn write (the run
died in it, before acting on it) and ignored; any other line that does not check out is reported.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CRC_FIELD = b'"crc32":"'
# ``,"crc32":"xxxxxxxx"}``: the separator (or the opening brace of an empty record), the field,
# eight hex digits, the closing quote and brace.
TAIL_LENGTH = 1 + len(CRC_FIELD) + 8 + 2
READ_CHUNK = 1 << 16


class BadLine(ValueError):
    """A complete journal line that is not a record (garbled, or its checksum does not match)."""


def encode_record(record: Mapping[str, Any]) -> bytes:
    """``record`` as one checksummed journal line, newline included."""
    body = json.dumps(record, separators=(",", ":"), sort_keys=True).encode("ascii")
    separator = b"," if body != b"{}" else b""
    return body[:-1] + separator + CRC_FIELD + b"%08x" % zlib.crc32(body) + b'"}\n'


def decode_line(line: bytes) -> tuple[dict[str, Any], bool]:
    """The record on one line (without its newline), and whether it carried a checksum."""
    tail = line[-TAIL_LENGTH:]
    if len(tail) == TAIL_LENGTH and tail[1:1 + len(CRC_FIELD)] == CRC_FIELD and tail.endswith(b'"}'):
        empty = len(line) == TAIL_LENGTH
        if tail[:1] != (b"{" if empty else b","):
            raise BadLine("its checksum is damaged")
        body = b"{}" if empty else line[:-TAIL_LENGTH] + b"}"
        try:
            expected = int(tail[1 + len(CRC_FIELD):-2], 16)
        except ValueError:
            raise BadLine("its checksum is damaged") from None
        if zlib.crc32(body) != expected:
            raise BadLine("its checksum does not match its content")
        return _object(body), True
    if CRC_FIELD in line:
        raise BadLine("its checksum is damaged")
    return _object(line), False


def _object(text: bytes) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise BadLine("it is not JSON") from None
    if not isinstance(value, dict):
        raise BadLine("it is not a JSON object")
    return value


@dataclass(frozen=True)
class JournalLines:
    """A journal's content read leniently: the records, and the unreadable lines with reasons."""

    records: list[dict[str, Any]]
    bad: list[tuple[int, str]]  # (line number, reason)
    torn_tail: bool


def read_lines(raw: bytes) -> JournalLines:
    lines = raw.split(b"\n")
    torn = lines.pop() != b""  # the text after the last newline: a write that never finished
    records, bad, checksummed = [], [], False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record, has_checksum = decode_line(line)
        except BadLine as exc:
            bad.append((number, str(exc)))
            continue
        if checksummed and not has_checksum:
            bad.append((number, "it has no checksum, unlike the lines before it"))
            continue
        checksummed = checksummed or has_checksum
        records.append(record)
    return JournalLines(records, bad, torn)


class JournalFile:
    """The journal's file, opened for appending. The primitives are separate methods so that
    tests can put a file that fails (a full disk, an I/O error) in its place."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, path: Path) -> JournalFile:
        return cls(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600))

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read_at(self, length: int, offset: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def write(self, data: bytes) -> int:
        return os.write(self.fd, data)

    def sync(self) -> None:
        os.fsync(self.fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def close(self) -> None:
        os.close(self.fd)

    def append(self, line: bytes, end: int) -> None:
        """Write ``line`` at ``end`` (the file's size) and make it durable; on any failure, cut
        the file back to ``end`` so that it holds exactly what it held before, and re-raise.
        ``UndoFailed`` if even that fails: the file may end in a torn line."""
        try:
            written = 0
            while written < len(line):  # a short write (a full disk) must not pass for a record
                written += self.write(line[written:])
            self.sync()
        except OSError as failure:
            try:
                self.truncate(end)
                self.sync()
            except OSError as undo:
                raise UndoFailed(failure, undo) from failure
            raise

    def cut_torn_tail(self) -> int:
        """Drop a last record a killed run was still writing (a kill can cut a multi-page write
        short) and return the size after. Appending after it would glue the next record to it."""
        end = self.size()
        if end == 0 or self.read_at(1, end - 1) == b"\n":
            return end
        keep, position = 0, end
        while position > 0:  # find the last complete record, reading backwards
            start = max(0, position - READ_CHUNK)
            newline = self.read_at(position - start, start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            position = start
        self.truncate(keep)
        self.sync()
        return keep


class UndoFailed(OSError):
    """An append failed and cutting the file back failed too."""

    def __init__(self, failure: OSError, undo: OSError) -> None:
        super().__init__(failure.errno, failure.strerror)
        self.failure = failure
        self.undo = undo
