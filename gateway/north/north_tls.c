/* north_tls.c: TLS for the upstream link on the north loop: an OpenSSL client over two memory BIOs
 * (the loop's TCP bytes go in, ciphertext comes out to be written), verifying the broker's chain
 * against ca_file and, unless tls_insecure, its host name or IP address; optional client cert. */
#include "north_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct gw__north_tls {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out; /* network side: in = bytes from the broker, out = bytes for it */
    bool done;     /* handshake complete */
};

/* The reason of the last failure into err (OpenSSL's queue, or the verification result). */
static void tls_error(gw__north_tls *t, const char *what, char *err, size_t cap)
{
    long v = t && t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    if (v != X509_V_OK)
        snprintf(err, cap, "TLS %s: certificate verify failed: %s", what,
                 X509_verify_cert_error_string(v));
    else
        snprintf(err, cap, "TLS %s: %s", what, e ? buf : "failed");
}

void gw__north_tls_free(gw__north_tls *t)
{
    if (!t)
        return;
    if (t->ssl)
        SSL_free(t->ssl); /* frees both BIOs */
    SSL_CTX_free(t->ctx);
    gw_free(GW_AREA_RUNTIME, t);
}

int gw__north_tls_new(const gw_north_cfg *c, gw__north_tls **out, char *err, size_t cap)
{
    gw__north_tls *t = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*t));
    *out = NULL;
    if (!t) {
        snprintf(err, cap, "out of memory");
        return GW_ENOMEM;
    }
    ERR_clear_error();
    if (!(t->ctx = SSL_CTX_new(TLS_client_method())))
        goto fail;
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(t->ctx, c->ca_file, NULL) != 1)
        goto fail;
    if (c->cert_file &&
        (SSL_CTX_use_certificate_chain_file(t->ctx, c->cert_file) != 1 ||
         SSL_CTX_use_PrivateKey_file(t->ctx, c->key_file ? c->key_file : c->cert_file,
                                     SSL_FILETYPE_PEM) != 1 ||
         SSL_CTX_check_private_key(t->ctx) != 1))
        goto fail;
    if (!(t->ssl = SSL_new(t->ctx)))
        goto fail;
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (!t->in || !t->out) {
        BIO_free(t->in);
        BIO_free(t->out);
        goto fail;
    }
    BIO_set_mem_eof_return(t->in, -1); /* empty: "retry", not end of file */
    SSL_set_bio(t->ssl, t->in, t->out);
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, c->host, ip) == 1 || inet_pton(AF_INET6, c->host, ip) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(t->ssl, c->host); /* SNI */
    if (!c->tls_insecure) {
        X509_VERIFY_PARAM *p = SSL_get0_param(t->ssl);
        X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(p, c->host)
                   : X509_VERIFY_PARAM_set1_host(p, c->host, 0)) != 1)
            goto fail;
    }
    *out = t;
    return 0;
fail:
    tls_error(NULL, "set-up", err, cap);
    gw__north_tls_free(t);
    return GW_EINVAL;
}

/* Moves the ciphertext OpenSSL produced into b. */
static int drain(gw__north_tls *t, gw__north_buf *b)
{
    size_t pend = BIO_ctrl_pending(t->out);
    if (!pend)
        return 0;
    if (gw__north_buf_reserve(b, pend))
        return GW_ENOMEM;
    int got = BIO_read(t->out, b->p + b->len, (int)pend);
    if (got > 0)
        b->len += (size_t)got;
    return 0;
}

int gw__north_tls_input(gw__north_tls *t, const void *data, size_t len, gw__north_buf *plain,
                        gw__north_buf *wire, char *err, size_t cap)
{
    if (len && BIO_write(t->in, data, (int)len) != (int)len) {
        snprintf(err, cap, "TLS: out of memory");
        return GW_ENOMEM;
    }
    if (!t->done) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                tls_error(t, "handshake", err, cap);
                drain(t, wire); /* the alert */
                return GW_EPROTO;
            }
            return drain(t, wire);
        }
        t->done = true;
    }
    for (;;) {
        if (gw__north_buf_reserve(plain, 16384))
            return GW_ENOMEM;
        int r = SSL_read(t->ssl, plain->p + plain->len, (int)(plain->cap - plain->len));
        if (r > 0) {
            plain->len += (size_t)r;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN)
            snprintf(err, cap, "TLS: closed by the broker");
        else
            tls_error(t, "read", err, cap);
        return GW_EPROTO;
    }
    return drain(t, wire);
}

bool gw__north_tls_ready(const gw__north_tls *t)
{
    return t->done;
}

int gw__north_tls_output(gw__north_tls *t, gw__north_buf *plain, gw__north_buf *wire, char *err,
                         size_t cap)
{
    if (t->done && plain->len) {
        int r = SSL_write(t->ssl, plain->p, (int)plain->len); /* a memory BIO takes it all */
        if (r <= 0) {
            tls_error(t, "write", err, cap);
            return GW_EPROTO;
        }
        plain->len = 0;
    }
    return drain(t, wire);
}
