#!/usr/bin/env python3
"""A measuring device, not a proxy: how much does relaying a tunnel cost when the kernel moves the
bytes itself, with no user-space wake-up, read or write per message?

It answers every CONNECT with 200 after dialling one fixed upstream (it does not look at the target),
then puts both sockets into a BPF sockhash whose stream verdict program redirects every received
skb to the other socket's send side (bpf_sk_redirect_hash keyed by the receiving socket's cookie).
User space only watches for FIN/RST (EPOLLRDHUP, no EPOLLIN, so data does not wake it) and passes
the shutdown on. Needs root (BPF_PROG_LOAD of an sk_skb program) and a kernel with
CONFIG_BPF_STREAM_PARSER. Used by floor.sh; usage: sockmap_relay.py LISTEN_ADDR:PORT UPSTREAM_ADDR:PORT
"""
import ctypes
import os
import select
import socket
import struct
import sys
import threading

SYS_BPF = 321  # x86_64
BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_PROG_LOAD, BPF_PROG_ATTACH = 0, 2, 5, 8
MAP_SOCKHASH, PROG_SK_SKB, ATTACH_SK_SKB_VERDICT = 18, 14, 38
HELPER_GET_SOCKET_COOKIE, HELPER_SK_REDIRECT_HASH = 46, 72
SO_COOKIE = 57

libc = ctypes.CDLL(None, use_errno=True)
keep = []  # buffers whose addresses the kernel reads during a call


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    fd = libc.syscall(SYS_BPF, cmd, buf, 128)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf command {cmd}: {os.strerror(err)}")
    return fd


def addr(data):
    b = ctypes.create_string_buffer(data, len(data))
    keep.append(b)
    return ctypes.addressof(b)


def ins(op, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


def load_program(map_fd):
    code = b"".join([
        ins(0xBF, 6, 1),                              # r6 = ctx
        ins(0x85, imm=HELPER_GET_SOCKET_COOKIE),      # r0 = cookie of the receiving socket
        ins(0x7B, 10, 0, -8),                         # key on the stack
        ins(0xBF, 1, 6),                              # r1 = ctx
        ins(0x18, 2, 1, 0, map_fd), ins(0),           # r2 = the sockhash (pseudo map fd, 2 slots)
        ins(0xBF, 3, 10), ins(0x07, 3, 0, 0, -8),     # r3 = &key
        ins(0xB7, 4, 0, 0, 0),                        # r4 = 0: egress of the peer socket
        ins(0x85, imm=HELPER_SK_REDIRECT_HASH),       # r0 = SK_PASS if the key has a peer
        ins(0x95),                                    # return r0
    ])
    log = ctypes.create_string_buffer(16384)
    attr = struct.pack("IIQQIIQ", PROG_SK_SKB, len(code) // 8, addr(code), addr(b"GPL\0"),
                       1, len(log), ctypes.addressof(log))
    try:
        return bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        sys.exit(f"sockmap_relay: the verifier refused the program ({e}): {log.value.decode()}")


def main():
    listen, upstream = sys.argv[1], sys.argv[2]
    map_fd = bpf(BPF_MAP_CREATE, struct.pack("IIII", MAP_SOCKHASH, 8, 4, 65536))
    prog_fd = load_program(map_fd)
    bpf(BPF_PROG_ATTACH, struct.pack("III", map_fd, prog_fd, ATTACH_SK_SKB_VERDICT))

    def pair(sock, peer):  # data received on sock goes out of peer
        key = sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8)
        bpf(BPF_MAP_UPDATE_ELEM, struct.pack("IIQQQ", map_fd, 0, addr(key),
                                             addr(struct.pack("I", peer.fileno())), 0))

    ep = select.epoll()
    live, lock = {}, threading.Lock()

    def watch():
        while True:
            for fd, _ in ep.poll():
                with lock:
                    entry = live.pop(fd, None)
                if entry is None:
                    continue
                sock, peer = entry
                ep.unregister(fd)
                try:
                    peer.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                with lock:
                    done = peer.fileno() not in live
                if done:
                    sock.close()
                    peer.close()

    threading.Thread(target=watch, daemon=True).start()
    host, port = upstream.rsplit(":", 1)

    def accept(client):
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        if not head.endswith(b"\r\n\r\n"):
            print("sockmap_relay: the client sent bytes after its CONNECT head; this device does not relay them",
                  file=sys.stderr)
            client.close()
            return
        up = socket.create_connection((host, int(port)))
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Both sockets are in the map before the client may speak (it waits for the 200).
        pair(client, up)
        pair(up, client)
        with lock:
            live[client.fileno()] = (client, up)
            live[up.fileno()] = (up, client)
        for s in (client, up):
            ep.register(s.fileno(), select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lhost, lport = listen.rsplit(":", 1)
    lsock.bind((lhost, int(lport)))
    lsock.listen(4096)
    print("ready", flush=True)
    while True:
        c, _ = lsock.accept()
        threading.Thread(target=accept, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
