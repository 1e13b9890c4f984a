"""Keep pytest out of the unpacked oss2 sdist: its tests run only through the harness, against a LocalServer."""

collect_ignore_glob = ["_sdist/*"]
