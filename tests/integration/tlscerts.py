# tlscerts.py: throwaway ECDSA P-256 certificates for the TLS tests, made with the openssl CLI in
# a test's own temp dir (never the source tree): a CA (with `openssl ca`, so that certificates can
# carry any dates, be revoked and listed in a CRL), server and client certificates.
import os
import subprocess

CA_CNF = """
[ ca ]
default_ca = gw_ca
[ gw_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/{name}.crt
private_key = $dir/{name}.key
default_md = sha256
default_days = 30
default_crl_days = 30
policy = gw_policy
copy_extensions = copy
unique_subject = no
[ gw_policy ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ v3_leaf ]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
"""


def run(*args, cwd=None):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, cwd=cwd, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), p.stderr.decode("utf-8",
                                                                              "replace")))
    return p.stdout


class CA:
    """A CA in folder dir/name: issue() signs ECDSA P-256 leaves, revoke() and crl() manage a
    CRL. Files are PEM; paths returned are absolute."""

    def __init__(self, dir, name="ca"):
        self.dir = os.path.join(dir, name)
        self.name = name
        os.makedirs(os.path.join(self.dir, "newcerts"), exist_ok=True)
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(self.dir, "crlnumber"), "w") as f:
            f.write("1000\n")
        self.cnf = os.path.join(self.dir, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(CA_CNF.format(dir=self.dir, name=name))
        self.key = os.path.join(self.dir, name + ".key")
        self.cert = os.path.join(self.dir, name + ".crt")
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", self.key)
        run("req", "-new", "-x509", "-key", self.key, "-out", self.cert, "-days", "30", "-subj",
            "/CN=iotgw test CA " + name, "-config", self.cnf, "-extensions", "v3_ca")

    def issue(self, cn, san=None, start=None, end=None, days=30, out=None):
        """A leaf for cn (san: "DNS:localhost,IP:127.0.0.1,URI:..."); start/end: YYMMDDHHMMSSZ.
        Returns (cert, key) paths."""
        base = os.path.join(self.dir, out or cn)
        key, csr, crt = base + ".key", base + ".csr", base + ".crt"
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        args = ["req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + cn, "-config",
                self.cnf]
        if san:
            args += ["-addext", "subjectAltName=" + san]
        run(*args)
        args = ["ca", "-batch", "-config", self.cnf, "-in", csr, "-out", crt, "-extensions",
                "v3_leaf", "-notext"]
        if start:
            args += ["-startdate", start]
        if end:
            args += ["-enddate", end]
        else:
            args += ["-days", str(days)]
        run(*args)
        return crt, key

    def revoke(self, cert):
        run("ca", "-batch", "-config", self.cnf, "-revoke", cert)

    def crl(self, path=None):
        path = path or os.path.join(self.dir, self.name + ".crl")
        tmp = path + ".tmp"
        run("ca", "-batch", "-config", self.cnf, "-gencrl", "-out", tmp)
        os.replace(tmp, path)
        return path


def server_cert(ca, name="server"):
    return ca.issue("localhost", san="DNS:localhost,IP:127.0.0.1", out=name)
