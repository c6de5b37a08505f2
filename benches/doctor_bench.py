#!/usr/bin/env python3
"""Helpers for benches/doctor_vs_blackbox.sh (standard library only).

  doctor_bench.py targets OUT N_ADDRS PORT_BASE N_PORTS      # write the endpoint list, one URL a line
  doctor_bench.py serve TARGETS READY_FILE                     # answer `200 ok` on every endpoint of TARGETS
  doctor_bench.py policy TARGETS STORE CONCURRENCY > policy.yaml
  doctor_bench.py drive TARGETS EXPORTER_HOSTPORT CONCURRENCY  # probe all through blackbox's /probe

The server is one asyncio process with one listening socket per endpoint (addresses 127.0.1.1.. × ports);
it reads a request head, answers `HTTP/1.1 200 OK`, `Content-Length: 2`, `Connection: close`, body `ok`, and
closes. The driver keeps CONCURRENCY keep-alive connections to the exporter and sends one
`GET /probe?target=URL&module=http_2xx` per target, counting `probe_success 1` answers.
"""
import asyncio
import json
import os
import socket
import sys
import time
from urllib.parse import quote, urlsplit


def read_targets(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def cmd_targets(out, n_addrs, port_base, n_ports):
    with open(out, "w") as f:
        for a in range(1, int(n_addrs) + 1):
            for p in range(int(port_base), int(port_base) + int(n_ports)):
                f.write(f"http://127.0.1.{a}:{p}/health\n")


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class Health(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.t.write(RESPONSE)
            self.t.close()

    def connection_lost(self, exc):
        pass


async def serve(targets, ready):
    loop = asyncio.get_running_loop()
    servers = []
    for url in targets:
        u = urlsplit(url)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((u.hostname, u.port))
        s.listen(1024)
        s.setblocking(False)
        servers.append(await loop.create_server(Health, sock=s))
    with open(ready, "w") as f:
        f.write(f"{len(servers)}\n")
    await asyncio.Event().wait()


def cmd_policy(targets_path, store, concurrency):
    targets = read_targets(targets_path)
    out = [
        "version: 1",
        "mode: dry-run",
        f"store: {store}",
        "targets:",
        "  - name: sweep",
        "    type: hosts",
        "    hosts:",
    ]
    for i, url in enumerate(targets):
        u = urlsplit(url)
        out.append(f'      - {{ id: ep-{i:05d}, address: {u.hostname}, group: g{i % 20:02d}, url: "{url}" }}')
    out += [
        "monkeys:",
        "  doctor:",
        '    schedule: "*/5 * * * *"',
        "    expect_status: [200]",
        "    timeout: 2s",
        f"    concurrency: {concurrency}",
    ]
    print("\n".join(out))


async def read_body(reader, head):
    """The body of an HTTP/1.1 response: Content-Length or chunked (Go chunks bodies over ~2 KiB)."""
    length, chunked = 0, False
    for line in head.split(b"\r\n"):
        low = line.lower()
        if low.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif low.startswith(b"transfer-encoding:") and b"chunked" in low:
            chunked = True
    if not chunked:
        return await reader.readexactly(length)
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers from the exporter: just the final CRLF
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def drive(targets, hostport, concurrency):
    host, port = hostport.rsplit(":", 1)
    queue = list(reversed(targets))
    stats = {"ok": 0, "failed": 0, "errors": 0}
    latencies = []

    async def worker():
        reader = writer = None
        while queue:
            url = queue.pop()
            req = (
                f"GET /probe?module=http_2xx&target={quote(url, safe='')} HTTP/1.1\r\n"
                f"Host: {hostport}\r\n\r\n"
            ).encode()
            for attempt in (1, 2):  # one reconnect if the exporter closed an idle keep-alive connection
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, int(port))
                    t0 = time.perf_counter()
                    writer.write(req)
                    head = await reader.readuntil(b"\r\n\r\n")
                    body = await read_body(reader, head)
                    latencies.append(time.perf_counter() - t0)
                    if b"\nprobe_success 1" in body:
                        stats["ok"] += 1
                    else:
                        stats["failed"] += 1
                    break
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    if attempt == 2:
                        stats["errors"] += 1
        if writer is not None:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    latencies.sort()
    pct = lambda q: round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) if latencies else None
    stats.update(wall_s=round(wall, 3), p50_ms=pct(0.50), p99_ms=pct(0.99))
    print(json.dumps(stats))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "targets":
        cmd_targets(*args)
    elif cmd == "serve":
        asyncio.run(serve(read_targets(args[0]), args[1]))
    elif cmd == "policy":
        cmd_policy(args[0], args[1], int(args[2]))
    elif cmd == "drive":
        asyncio.run(drive(read_targets(args[0]), args[1], int(args[2])))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
