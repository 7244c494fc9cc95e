# tlsutil.py: TLS clients for the TLS tests: a raw MQTT client over TLS (Python's ssl), TLS-PSK
# sessions through `openssl s_client` (Python's ssl cannot do PSK), and a "refused" probe.
import os
import select
import socket
import ssl
import subprocess
import time

import binframes as b
import gwtest as g


def context(ca_cert=None, cert=None, key=None, verify=True, version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(ca_cert)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    if version == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


class TlsDev(b.Dev):
    """binframes.Dev over TLS (the handshake happens in the constructor)."""

    def __init__(self, port, ctx, timeout=5.0):
        raw = socket.create_connection((g.HOST, port), timeout=timeout * g.SLOW)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf = b""


class TlsRaw(g.RawClient):
    """g.RawClient over TLS. The handshake happens in the constructor (ssl.SSLError if the
    server refuses it at once; TLS 1.3 reports a refused client certificate on the first read)."""

    def __init__(self, port, ctx, timeout=5.0, auto_puback=True, session=None):
        raw = socket.create_connection((g.HOST, port), timeout=timeout * g.SLOW)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
        except Exception:
            raw.close()
            raise
        self.buf = bytearray()
        self.closed = False
        self.auto_puback = auto_puback
        self.timeout = timeout

    def _fill(self, timeout):
        if not self.sock.pending():  # (poll: descriptors past 1024 in the big tests)
            pl = select.poll()
            pl.register(self.sock.fileno(), select.POLLIN)
            if not pl.poll(max(0.0, timeout) * 1000):
                return False
        try:
            chunk = self.sock.recv(65536)
        except ssl.SSLWantReadError:
            return False
        except (ConnectionResetError, OSError) as e:
            if isinstance(e, socket.timeout):
                return False
            self.closed = True
            raise g.Closed(str(e))
        if not chunk:
            self.closed = True
            raise g.Closed("EOF")
        self.buf += chunk
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def connack(port, ctx, client_id, username=None, password=None, level=4, timeout=5.0):
    """CONNECT over TLS: the CONNACK code, or None if the handshake or the connection was refused
    (then the second value says how)."""
    try:
        c = TlsRaw(port, ctx, timeout=timeout)
    except (ssl.SSLError, OSError) as e:
        return None, "handshake: %s" % e
    try:
        if level == 5:
            import mqtt5lib
            c.send(mqtt5lib.connect5(client_id, username, password))
        else:
            c.send(g.connect_packet(client_id, username, password, level=level))
        p = c.read_packet()
        if p is None:
            return None, "no answer"
        if p.type != g.CONNACK:
            return None, "not a CONNACK: %r" % p
        rc = p.rc
        return rc, c
    except (g.Closed, ssl.SSLError, OSError) as e:
        return None, "closed: %s" % e


class PskClient:
    """A TLS-PSK session to port through openssl s_client (identity dev, key = secret's bytes):
    send() writes bytes, read(n) waits for n bytes of answer. sess_out: a file s_client writes the
    session (with its ticket) to; sess_in: a session file it offers for resumption."""

    def __init__(self, port, dev, secret, version, sess_in=None, sess_out=None):
        args = ["openssl", "s_client", "-connect", "%s:%d" % (g.HOST, port), "-psk",
                secret.encode().hex(), "-psk_identity", dev, "-quiet", "-nocommands"]
        if sess_in:
            args += ["-sess_in", sess_in]
        if sess_out:
            args += ["-sess_out", sess_out]
        if version == "1.2":
            args += ["-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256"]
        else:
            args += ["-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"]
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        g._started.append(self.p)
        self.buf = b""

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def read(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout * g.SLOW
        fd = self.p.stdout.fileno()
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        err = self.p.stderr.read().decode("utf-8", "replace")
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                f.close()
            except OSError:
                pass
        return err


def listener_port(gw, adapter, index):
    """The bound port of an adapter's index-th listener (--ready-fd order)."""
    ports = [int(kv["port"]) for kv in gw.listeners if kv.get("adapter") == adapter]
    return ports[index] if index < len(ports) else None
