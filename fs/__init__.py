"""oaio.fs — the pyfuse3 mount of oai objects and the ``oaio`` command line."""
