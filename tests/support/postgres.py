"""A throwaway PostgreSQL cluster the tests own, so they can stop and restart the server itself
(the machine's server on 5432 is shared with every other test). Uses Debian's server binaries,
which `cargo xtask test` installs when missing."""

import glob
import os
import shutil
import subprocess
import tempfile

from .envoy import free_port


def server_bin():
    """Newest /usr/lib/postgresql/<v>/bin holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


class Cluster:
    def __init__(self):
        self.bin = server_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.dir = tempfile.mkdtemp(prefix="tollgate-pgfault-")
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.run(f"{self.bin}/initdb -D {self.dir}/data -A trust -U postgres")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, cmd, timeout=60):
        # PostgreSQL refuses to run as root: as root, run it as the postgres user.
        argv = ["su", "postgres", "-s", "/bin/sh", "-c", cmd] if self.as_root else ["sh", "-c", cmd]
        subprocess.run(argv, check=True, capture_output=True, timeout=timeout)

    def start(self):
        self.run(f"{self.bin}/pg_ctl -D {self.dir}/data -l {self.dir}/server.log -w "
                 f"-o '-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1' start")
        return self

    def stop(self, mode="fast"):
        """`fast`: active sessions are terminated (57P01) and rolled back, like a restart."""
        self.run(f"{self.bin}/pg_ctl -D {self.dir}/data -m {mode} -w stop")

    def destroy(self):
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
