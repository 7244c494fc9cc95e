#!/bin/sh
# make-example-certs.sh: a throwaway CA and an ECDSA P-256 server certificate (CN localhost, SAN
# localhost and 127.0.0.1) for the shipped config's MQTT-over-TLS listener (port 8883), written
# to config/tls/ (or the folder given) only when they are missing. Never commit them (.gitignore);
# use your own certificates in production (docs/TLS.md).
set -eu
DIR=${1:-$(cd "$(dirname "$0")/.." && pwd)/config/tls}
[ -s "$DIR/server.crt" ] && [ -s "$DIR/server.key" ] && [ -s "$DIR/ca.crt" ] && exit 0
command -v openssl >/dev/null 2>&1 || { echo "make-example-certs: openssl not found" >&2; exit 1; }
mkdir -p "$DIR"
umask 077
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/ca.key"
openssl req -new -x509 -key "$TMP/ca.key" -out "$TMP/ca.crt" -days 3650 \
  -subj "/CN=iotgw example CA (throwaway)" \
  -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/server.key"
openssl req -new -key "$TMP/server.key" -out "$TMP/server.csr" -subj "/CN=localhost"
printf 'basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n' > "$TMP/ext.cnf"
openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.crt" -CAkey "$TMP/ca.key" \
  -CAcreateserial -out "$TMP/server.crt" -days 825 -extfile "$TMP/ext.cnf" 2>/dev/null
chmod 644 "$TMP/ca.crt" "$TMP/server.crt"
for f in ca.key ca.crt server.key server.crt; do mv "$TMP/$f" "$DIR/$f"; done
echo "make-example-certs: throwaway CA and server certificate in $DIR" >&2
