#!/usr/bin/env python3
"""pyfuse3's passthroughfs example with an ``fsync`` that flushes to the disk:
``passthroughfs_fsync.py EXAMPLE SOURCE MOUNTPOINT [example options]``.

The example (fetched at bench time, not committed) has no ``fsync`` handler: pyfuse3 answers
ENOSYS, which the kernel takes as "done", so its "write + fsync" would flush nothing while the
other contestants do. This runs the example unchanged but for one handler, ``os.fsync`` on the
file descriptor the example uses as its file handle.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import pyfuse3


def load_example(path: str):
    spec = importlib.util.spec_from_file_location('passthroughfs', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    example = load_example(sys.argv[1])

    class Operations(example.Operations):
        async def fsync(self, fh, datasync):
            try:
                (os.fdatasync if datasync else os.fsync)(fh)
            except OSError as exc:
                raise pyfuse3.FUSEError(exc.errno) from None

    example.Operations = Operations         # main() builds the example's Operations by this name
    sys.argv = [sys.argv[1]] + sys.argv[2:]
    example.main()


if __name__ == '__main__':
    main()
