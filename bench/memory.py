#!/usr/bin/env python3
"""Idle memory of airlock and the cost of idle blind tunnels.

Starts target/release/airlock with a host-only automatic rule for 127.0.0.1,
reads its RSS at idle, opens N CONNECT tunnels to a local listener that
accepts and stays silent, and reads RSS again.

    python3 bench/memory.py [N]          (default 1000)
"""
import os, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="airlock-mem.")
    os.makedirs(f"{work}/rules")
    with open(f"{work}/rules/00.toml", "w") as f:
        f.write('[[rule]]\nname = "local"\naction = "automatic"\nhost = ["127.0.0.1"]\n')
    port = free_port()
    with open(f"{work}/airlock.toml", "w") as f:
        f.write(f'[proxy]\nlisten = "127.0.0.1:{port}"\n[review]\nlisten = "127.0.0.1:0"\n'
                f'[store]\npath = "{work}/data"\n[tls]\nca_dir = "{work}/certs"\n'
                f'[rules]\ndir = "{work}/rules"\n[defaults]\nunmatched = "deny"\n')
    # A silent origin: accepts and keeps the sockets.
    origin = socket.socket()
    origin.bind(("127.0.0.1", 0))
    origin.listen(4096)
    oport = origin.getsockname()[1]
    env = dict(os.environ, RUST_LOG="warn")
    proc = subprocess.Popen([f"{ROOT}/target/release/airlock", "run", "--config", f"{work}/airlock.toml"], env=env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(1.0)
        idle = rss_kib(proc.pid)
        clients, accepted = [], []
        origin.setblocking(False)
        for i in range(N):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(f"CONNECT 127.0.0.1:{oport} HTTP/1.1\r\nHost: 127.0.0.1:{oport}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.recv(1024)
            assert head.startswith(b"HTTP/1.1 200"), head
            clients.append(c)
            try:
                while True:
                    accepted.append(origin.accept()[0])
            except BlockingIOError:
                pass
        time.sleep(1.0)
        loaded = rss_kib(proc.pid)
        print(f"idle RSS: {idle / 1024:.1f} MiB")
        print(f"with {N} idle blind tunnels: {loaded / 1024:.1f} MiB "
              f"(+{(loaded - idle) / 1024:.1f} MiB, {(loaded - idle) * 1024 / N / 1024:.1f} KiB per tunnel)")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
