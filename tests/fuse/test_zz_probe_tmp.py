from tests.fuse.test_writes import peak_rss
def test_probe(make_mount):
    m = make_mount()
    (m.path / "x").write_bytes(b"x" * 1000)
    (m.path / "x").read_bytes()
    print("BASE VmHWM", peak_rss(m.process.pid) // (1024*1024))
