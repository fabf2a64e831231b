"""Files as chunks: the sha256 of a file and, for a file larger than one chunk, its content-defined
chunks (FastCDC, from pyfastcdc), in one read of the file.

Why these choices (measured on this project's 2-core machine, 2026-12-02; contrib/bench/notes.md):
pyfastcdc cuts at 2.9 GB/s, the pure-Python ``fastcdc`` package at 1.9 GB/s. sha256 runs at
1.8 GB/s here (hashlib, with the CPU's SHA extensions), BLAKE3 at 7.0 GB/s on one thread: sha256
stays the hash of chunks and files, because the original protocol, every stored file and the proof
of possession are keyed by it, so a small file, a chunk and a file stored before chunks existed are
one namespace and deduplicate against each other, and at 1.8 GB/s hashing is not what limits a sync.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyfastcdc import FastCDC

from . import protocol as p

WINDOW_BYTES = 16 * p.MiB
# pyfastcdc's average is its avg_size plus min_size (cut-point skipping)
_CHUNKER = FastCDC(p.AVG_CHUNK_BYTES - p.MIN_CHUNK_BYTES, min_size=p.MIN_CHUNK_BYTES, max_size=p.MAX_CHUNK_BYTES)


def hash_file(path: Path | str) -> tuple[str, int, list | None]:
    """``(sha256, size, chunks)`` of a file; ``chunks`` is ``[[sha256, size], …]`` for a file larger
    than :data:`oaio.protocol.SINGLE_CHUNK_BYTES`, None for a file that is one chunk."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    if size <= p.SINGLE_CHUNK_BYTES:
        with open(path, 'rb') as file:
            data = file.read(p.SINGLE_CHUNK_BYTES + 1)
        digest.update(data)
        return digest.hexdigest(), len(data), None
    chunks = []
    with ThreadPoolExecutor(1, thread_name_prefix='oaio-hash') as pool:
        for window, pieces_ in _windows(path):
            # the file's hash in a second thread while this one hashes the chunks: hashlib lets go
            # of the GIL, so both cores hash (0.52 GB/s on one, measured)
            whole = pool.submit(digest.update, window)
            for data in pieces_:
                chunks.append([hashlib.sha256(data).hexdigest(), len(data)])
            whole.result()
    return digest.hexdigest(), sum(size for _, size in chunks), chunks


def _windows(path: Path | str):
    """The content-defined chunks of a file, a window of about WINDOW_BYTES at a time (bounded
    memory): ``(window, chunks)``, memoryviews valid until the next window is asked for.

    pyfastcdc's cut_file maps the whole file (a 1 GiB file counted 1 GiB of resident memory) and its
    cut_stream ran at 0.31 GB/s here; cutting windows with cut_buf runs at full speed. A window's
    last chunk ends where the window ends, not where the content says: it is cut again at the head
    of the next window."""
    buffer = bytearray(WINDOW_BYTES + p.MAX_CHUNK_BYTES)    # reused: fresh memory costs page faults
    view = memoryview(buffer)
    carry = 0                                   # bytes at the head of the buffer from the last window
    with open(path, 'rb', buffering=0) as file:
        while True:
            read = file.readinto(view[carry:carry + WINDOW_BYTES])
            filled = carry + read
            if not filled:
                return
            cuts = [(chunk.offset, chunk.length) for chunk in _CHUNKER.cut_buf(view[:filled])]
            if read:                            # not the end of the file: the last chunk is cut again
                cuts, (offset, carry) = cuts[:-1], cuts[-1]
            end = cuts[-1][0] + cuts[-1][1] if cuts else 0
            yield view[:end], [view[offset:offset + length] for offset, length in cuts]
            if not read:
                return
            buffer[:carry] = buffer[offset:offset + carry]


def file_sha256(path: Path | str) -> str:
    """The sha256 of a file, read a window at a time into one reused buffer."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(WINDOW_BYTES))
    with open(path, 'rb', buffering=0) as file:
        while read := file.readinto(buffer):
            digest.update(buffer[:read])
    return digest.hexdigest()


def pieces(entry: dict) -> list:
    """The stored pieces of a manifest entry, in order: its chunks, or itself as one piece."""
    return entry.get('chunks') or [[entry['sha256'], entry['size']]]
