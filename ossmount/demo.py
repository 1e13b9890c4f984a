"""`ossmount demo`: the whole product on the embedded default, in one command.

Starts the built-in OSS-compatible server on a loopback port with a throwaway data directory, puts an object
there with oss2 (as another tool would), mounts the bucket with the real `ossmount` command, writes through the
mount, shows the tree with `ls -l`, shows what OSS now holds, then unmounts and stops the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from ossmount.errors import EXIT_MOUNT, ArgumentParser, QuietError


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print(f"$ {' '.join(cmd)}", flush=True)
    result = subprocess.run(cmd, text=True, capture_output=True, **kwargs)
    out = (result.stdout + result.stderr).rstrip()
    if out:
        print(out, flush=True)
    return result


def main(argv: list[str]) -> int:
    """Run the demo; `--keep` leaves the bucket mounted until Enter is pressed."""
    parser = ArgumentParser(prog="ossmount demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="stay mounted until Enter is pressed")
    args = parser.parse_args(argv)

    from ossmount.testing import LocalServer

    with tempfile.TemporaryDirectory(prefix="ossmount-demo-") as workdir:
        mountpoint = os.path.join(workdir, "mnt")
        os.mkdir(mountpoint)
        with LocalServer(os.path.join(workdir, "data"), buckets=("demo-bucket",)) as server:
            print(f"* built-in OSS server on {server.endpoint}, bucket demo-bucket", flush=True)
            bucket = server.oss2_bucket("demo-bucket")
            bucket.put_object("hello.txt", b"hello from an object uploaded with oss2\n")
            bucket.put_object("photos/2026/cat.jpg", b"\xff\xd8\xff not really a jpeg")

            passwd = os.path.join(workdir, "passwd-ossmount")
            fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"demo-bucket:{server.access_key_id}:{server.access_key_secret}\n")

            mount_cmd = [sys.executable, "-m", "ossmount", "demo-bucket", mountpoint,
                         "-o", f"url={server.endpoint},passwd_file={passwd}"]
            if _run(mount_cmd).returncode != 0:
                raise QuietError("the demo mount failed (see above)", EXIT_MOUNT)
            try:
                with open(os.path.join(mountpoint, "notes.md"), "w") as f:
                    f.write("# written through the FUSE mount\n")
                os.makedirs(os.path.join(mountpoint, "docs"), exist_ok=True)
                _run(["ls", "-lR", mountpoint])
                _run(["cat", os.path.join(mountpoint, "hello.txt")])
                print("* what OSS holds now (listed with oss2):", flush=True)
                for obj in bucket.list_objects_v2(max_keys=100).object_list:
                    head = bucket.head_object(obj.key)
                    mode = head.headers.get("x-oss-meta-mode")
                    print(f"  {obj.key:24} {obj.size:6d} bytes  {head.content_type:26}"
                          f" mode={oct(int(mode)) if mode else '-'}", flush=True)
                if args.keep:
                    input(f"* mounted at {mountpoint}; press Enter to unmount ")
            finally:
                _run(["fusermount3", "-u", mountpoint])
                for _ in range(50):
                    if not os.path.ismount(mountpoint):
                        break
                    time.sleep(0.1)
        print("* unmounted and stopped the server; done", flush=True)
    return 0
