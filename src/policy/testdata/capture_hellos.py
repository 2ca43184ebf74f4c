#!/usr/bin/env python3
"""Reproduce the TLS hello fixtures in this directory.

Everything happens on loopback (127.0.0.1). Clients (openssl s_client, curl, a
small rustls client) connect to a capture listener that records the raw bytes of
their ClientHello and hangs up. Servers (openssl s_server, a small rustls server)
are sent the captured OpenSSL ClientHello and the first bytes they answer with
are recorded (the ServerHello record(s) plus whatever else arrives in the same
first flight, capped at 4 KiB).

Usage:
    python3 capture_hellos.py [--out DIR] [--rustls-peer PATH]

Needs openssl and curl. The rustls fixtures need the small rustls client/server
whose source is rustls_peer.rs next to this script, built as a cargo example of
any crate that has rustls 0.23 (features ring, std, tls12) as a dependency, e.g.
with this in Cargo.toml and then `cargo build --example rustls_peer`:

    [[example]]
    name = "rustls_peer"
    path = "<path to this directory>/rustls_peer.rs"

The binary is looked for at --rustls-peer, $RUSTLS_PEER, or
target/debug/examples/rustls_peer in a parent directory; without it the rustls
fixtures are skipped. Python 3 standard library only; loopback only.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
SNI = "s3.us-east-1.amazonaws.com"
SERVER_CAP = 4096


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def recv_handshake_message(sock, first_type, deadline):
    """Read records until the first handshake message is complete and its record ends.

    Returns all bytes read. Minimal record parsing, just enough to know when to stop.
    """
    data = b""
    while True:
        # Walk the records we have.
        pos, hs, done = 0, b"", False
        while pos + 5 <= len(data):
            ctype = data[pos]
            rlen = int.from_bytes(data[pos + 3:pos + 5], "big")
            if pos + 5 + rlen > len(data):
                break
            if ctype == 22:
                hs += data[pos + 5:pos + 5 + rlen]
            pos += 5 + rlen
            if len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                done = True
                break
        if done:
            if hs[0] != first_type:
                raise RuntimeError(f"first handshake message has type {hs[0]}, wanted {first_type}")
            return data
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"timed out with {len(data)} bytes")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"peer closed after {len(data)} bytes")
        data += chunk


def capture_client(name, argv_for_port, outdir, stdin_data=b""):
    """Run a TLS client against a capture listener; save its ClientHello bytes."""
    lst = socket.socket()
    lst.bind((HOST, 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    argv = argv_for_port(port)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        lst.settimeout(10)
        conn, _ = lst.accept()
        with conn:
            data = recv_handshake_message(conn, 1, time.monotonic() + 10)
    finally:
        lst.close()
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    path = os.path.join(outdir, name)
    with open(path, "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes from {argv[0]}")
    return data


def wait_listening(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start listening")


def capture_server(name, argv_for_port, client_hello, outdir, probe=True):
    """Start a TLS server, send it a real ClientHello, save the first bytes it sends."""
    port = free_port()
    argv = argv_for_port(port)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        if probe:
            # openssl s_server keeps serving after a probe connection that sends nothing.
            wait_listening(port, proc)
        else:
            # single-shot servers: poll until connect succeeds, then use that connection.
            pass
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection((HOST, port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with sock:
            sock.sendall(client_hello)
            data = recv_handshake_message(sock, 2, time.monotonic() + 10)
            # Take whatever else the server sends in the same flight.
            end = time.monotonic() + 0.5
            while len(data) < SERVER_CAP and time.monotonic() < end:
                sock.settimeout(max(0.01, end - time.monotonic()))
                try:
                    chunk = sock.recv(SERVER_CAP - len(data))
                except socket.timeout:
                    break
                if not chunk:
                    break
                data += chunk
    finally:
        proc.kill()
        proc.wait()
    data = data[:SERVER_CAP]
    path = os.path.join(outdir, name)
    with open(path, "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes from {argv[0]}")
    return data


def find_rustls_peer(start):
    d = start
    while True:
        cand = os.path.join(d, "target", "debug", "examples", "rustls_peer")
        if os.path.exists(cand):
            return cand
        parent = os.path.dirname(d)
        if parent == d:
            return os.path.join(start, "rustls_peer")  # not found: reported and skipped
        d = parent


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=here)
    ap.add_argument("--rustls-peer", default=os.environ.get("RUSTLS_PEER") or find_rustls_peer(here))
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        cert = os.path.join(tmp, "cert.pem")
        key = os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2",
                        "-subj", f"/CN={SNI}", "-addext", f"subjectAltName=DNS:{SNI}"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        s_client = lambda extra: (lambda p: ["openssl", "s_client", "-connect", f"{HOST}:{p}",
                                             "-servername", SNI] + extra)
        ch_openssl = capture_client("client_hello_openssl.bin", s_client([]), out)
        capture_client("client_hello_curl.bin", lambda p: [
            "curl", "-sk", "--max-time", "5", "--resolve", f"{SNI}:{p}:{HOST}",
            f"https://{SNI}:{p}/"], out)
        capture_client("client_hello_openssl_tls11.bin",
                       s_client(["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]), out)
        capture_client("client_hello_rsa_only.bin",
                       s_client(["-no_tls1_3", "-cipher", "AES128-GCM-SHA256"]), out)
        peer = os.path.abspath(args.rustls_peer)
        have_peer = os.path.exists(peer)
        if have_peer:
            capture_client("client_hello_rustls.bin", lambda p: [peer, "client", str(p), SNI], out)
        else:
            print(f"skipping rustls fixtures: {peer} not found", file=sys.stderr)

        s_server = lambda extra: (lambda p: ["openssl", "s_server", "-accept", f"{HOST}:{p}",
                                             "-cert", cert, "-key", key, "-naccept", "5"] + extra)
        capture_server("server_hello_openssl_tls13.bin", s_server([]), ch_openssl, out)
        capture_server("server_hello_openssl_ecdhe_tls12.bin",
                       s_server(["-no_tls1_3", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]),
                       ch_openssl, out)
        capture_server("server_hello_openssl_rsa_kx.bin",
                       s_server(["-no_tls1_3", "-cipher", "AES128-GCM-SHA256"]), ch_openssl, out)
        # The OpenSSL ClientHello has a key share for x25519 only; a server limited to P-256
        # answers with a HelloRetryRequest (followed by a dummy change_cipher_spec record).
        capture_server("server_hello_openssl_hrr.bin", s_server(["-groups", "P-256"]), ch_openssl, out)
        if have_peer:
            capture_server("server_hello_rustls_tls13.bin",
                           lambda p: [peer, "server", str(p), cert, key], ch_openssl, out,
                           probe=False)


if __name__ == "__main__":
    main()
