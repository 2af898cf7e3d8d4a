"""Passive capture of TCP segments on the loopback interface, for hop-by-hop timings.

A packet socket (AF_PACKET, Linux, needs root or CAP_NET_RAW) on `lo` sees every segment the
stack's parts send each other, stamped by the kernel when it was sent (SO_TIMESTAMPNS), so the
observer's own scheduling does not shift the times. A classic BPF filter keeps only the ports
asked for; nothing is sent, nothing in the stack changes. Which process owns each end of a
connection comes from /proc (socket inodes), sampled while the capture runs.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35  # = SCM_TIMESTAMPNS (asm-generic/socket.h)
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4  # on lo each segment shows twice: as sent (kept) and as received
ETH_HEADER = 14


@dataclass(frozen=True)
class Segment:
    at: float  # epoch seconds (CLOCK_REALTIME, like time.time() and Date.now())
    src: int  # ports (everything is 127.0.0.1)
    dst: int
    head: bytes  # the first bytes of the TCP payload


def _bpf(ports: list[int]) -> bytes:
    """IPv4 TCP with a source or destination port in `ports`."""
    # (code, jt, jf, k); jumps are relative to the next instruction
    n = len(ports)
    prog: list[tuple[int, int, int, int]] = [
        (0x28, 0, 0, 12),  # ldh [12]: ethertype
        (0x15, 0, 2 * n + 5, 0x0800),  # IPv4, else reject
        (0x30, 0, 0, ETH_HEADER + 9),  # ldb [23]: protocol
        (0x15, 0, 2 * n + 3, 6),  # TCP, else reject
        (0xB1, 0, 0, ETH_HEADER),  # ldxb 4*([14]&0xf): IP header length
        (0x48, 0, 0, ETH_HEADER),  # ldh [x+14]: source port
    ]
    for i, port in enumerate(ports):
        prog.append((0x15, 2 * n - i + 1, 0, port))  # to accept
    prog.append((0x48, 0, 0, ETH_HEADER + 2))  # ldh [x+16]: destination port
    for i, port in enumerate(ports):
        prog.append((0x15, n - i, 0, port))  # to accept
    prog.append((0x06, 0, 0, 0))  # reject
    prog.append((0x06, 0, 0, 0x40000))  # accept
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


class Capture:
    """Records segments with a payload between the given ports until stopped."""

    def __init__(self, ports: list[int], head_bytes: int = 96) -> None:
        self.head_bytes = head_bytes
        self.segments: list[Segment] = []
        self._ports = set(ports)
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        code = _bpf(ports)
        program = ctypes.create_string_buffer(code, len(code))
        # struct sock_fprog {unsigned short len; struct sock_filter *filter;}
        fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(program))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Capture:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()

    def _run(self) -> None:
        anc = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            try:
                data, ancdata, _flags, addr = self._sock.recvmsg(0x40000, anc)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] != PACKET_OUTGOING:
                continue
            at = time.time()
            for level, kind, raw in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= 16:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    at = sec + nsec / 1e9
            # Checked again here: packets queued between socket() and the filter's attach (any
            # interface's) reach us unfiltered, which other processes' traffic makes likely.
            if data[12:14] != b"\x08\x00" or data[ETH_HEADER + 9] != 6:  # IPv4, TCP
                continue
            ihl = (data[ETH_HEADER] & 0x0F) * 4
            tcp = ETH_HEADER + ihl
            total = struct.unpack("!H", data[ETH_HEADER + 2 : ETH_HEADER + 4])[0]
            src, dst = struct.unpack("!HH", data[tcp : tcp + 4])
            if src not in self._ports and dst not in self._ports:
                continue
            offset = (data[tcp + 12] >> 4) * 4
            payload = data[tcp + offset : ETH_HEADER + total]
            if payload:
                self.segments.append(Segment(at, src, dst, bytes(payload[: self.head_bytes])))


# --- who owns which end of a connection -----------------------------------------------------


def _socket_inodes(pid: int) -> set[int]:
    found = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(int(target[8:-1]))
    except OSError:
        pass
    return found


def _tcp_ports_by_inode(listening: bool = False) -> dict[int, int]:
    """inode -> local port of every IPv4 TCP socket (only listening ones if asked)."""
    out = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if listening and fields[3] != "0A":
            continue
        out[int(fields[9])] = int(fields[1].split(":")[1], 16)
    return out


def listening_ports(pid: int) -> set[int]:
    by_inode = _tcp_ports_by_inode(listening=True)
    return {by_inode[i] for i in _socket_inodes(pid) if i in by_inode}


@dataclass
class Owners:
    """Local port -> role, for the processes named (role -> pids), sampled again and again."""

    pids: dict[str, list[int]]
    ports: dict[int, str] = field(default_factory=dict)

    def sample(self) -> None:
        by_inode = _tcp_ports_by_inode()
        for role, pids in self.pids.items():
            for pid in pids:
                for inode in _socket_inodes(pid):
                    port = by_inode.get(inode)
                    if port is not None:
                        self.ports[port] = role


class OwnerSampler:
    """Samples Owners every `every` seconds while open (connections come and go)."""

    def __init__(self, owners: Owners, every: float = 0.5) -> None:
        self.owners = owners
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Owners:
        self.owners.sample()
        self._thread.start()
        return self.owners

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.owners.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.owners.sample()
