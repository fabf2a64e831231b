#!/usr/bin/env python3
"""Give an unpacked pyfuse3 source tree two flags of libfuse's ``fuse_file_info`` that pyfuse3 does
not pass on: ``noflush`` (no FLUSH request at ``close()``) and ``cache_readdir`` (the kernel keeps a
directory's listing until it changes), both as attributes of ``pyfuse3.FileInfo``, and let
``Operations.opendir`` return a ``FileInfo`` instead of a bare handle number.

Usage: ``extend.py SOURCE_DIR`` (called by ``contrib/pyfuse3/build``). Every edit is looked for in
the version given in ``build``; if one is not found exactly once, nothing is written and it exits 1.
"""
from __future__ import annotations

import sys
from pathlib import Path

FLAGS = ('noflush', 'cache_readdir')

# (file, text found once in it, text it becomes)
EDITS = [
    ('Include/fuse_common.pxd',
     '        unsigned int nonseekable\n',
     '        unsigned int nonseekable\n' + ''.join(f'        unsigned int {flag}\n' for flag in FLAGS)),
    ('src/pyfuse3/__init__.pyx',
     '    cdef public bint nonseekable\n',
     '    cdef public bint nonseekable\n' + ''.join(f'    cdef public bint {flag}\n' for flag in FLAGS)),
    ('src/pyfuse3/__init__.pyx',
     'nonseekable=0):\n',
     'nonseekable=0, ' + ', '.join(f'{flag}=0' for flag in FLAGS) + '):\n'
     + ''.join(f'        self.{flag} = {flag}\n' for flag in FLAGS)),
    ('src/pyfuse3/__init__.pyx',
     '            out.nonseekable = 0\n',
     '            out.nonseekable = 0\n'
     + ''.join(f'        out.{flag} = 1 if self.{flag} else 0\n' for flag in FLAGS)),
    ('src/pyfuse3/handlers.pxi',
     '        c.fi.fh = await operations.opendir(c.ino, ctx)\n',
     '        opened = await operations.opendir(c.ino, ctx)\n'
     '        if isinstance(opened, FileInfo):\n'
     '            (<FileInfo> opened)._copy_to_fuse(&c.fi)\n'
     '        else:\n'
     '            c.fi.fh = opened\n'),
]


def main(source: Path) -> int:
    texts: dict[str, str] = {}
    for name, old, new in EDITS:
        text = texts.get(name) or (source / name).read_text()
        if text.count(old) != 1:
            print(f'{source / name}: {old.strip()!r} found {text.count(old)} times, not once: '
                  f'not the pyfuse3 version contrib/pyfuse3/build expects', file=sys.stderr)
            return 1
        texts[name] = text.replace(old, new)
    for name, text in texts.items():
        (source / name).write_text(text)
    generated = source / 'src/pyfuse3/__init__.c'         # built from the .pyx again, with the flags
    generated.unlink(missing_ok=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(Path(sys.argv[1])))
