/* listen.c: SO_REUSEPORT listeners (TCP and UDP), the start-up probe that no other process holds
 * their ports, and peer-address text. */
#include "listen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../config/plugins.h" /* gw_transport */

static int sockaddr_of(const gw_listen *at, uint16_t port, struct sockaddr_storage *ss, int *v6)
{
    *v6 = strchr(at->address, ':') != NULL;
    return *v6 ? uv_ip6_addr(at->address, port, (struct sockaddr_in6 *)ss)
               : uv_ip4_addr(at->address, port, (struct sockaddr_in *)ss);
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                           : ((const struct sockaddr_in *)ss)->sin_port);
}

static int reuseport(uv_handle_t *h)
{
    uv_os_fd_t fd;
    int on = 1;
    if (uv_fileno(h, &fd) != 0)
        return UV_EBADF;
    return setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) == 0 ? 0 : -errno;
}

int gw_listen_tcp(uv_loop_t *loop, uv_tcp_t *srv, const gw_listen *at, uint16_t *port,
                  uv_connection_cb on_connection)
{
    struct sockaddr_storage ss;
    int v6, rc, len = sizeof(ss);
    if ((rc = sockaddr_of(at, *port, &ss, &v6)) != 0)
        return rc;
    if ((rc = uv_tcp_init_ex(loop, srv, v6 ? AF_INET6 : AF_INET)) != 0)
        return rc;
    if ((rc = reuseport((uv_handle_t *)srv)) != 0 ||
        (rc = uv_tcp_bind(srv, (struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)srv, 1024, on_connection)) != 0)
        return rc;
    uv_tcp_getsockname(srv, (struct sockaddr *)&ss, &len);
    *port = port_of(&ss);
    return 0;
}

int gw_listen_udp(uv_loop_t *loop, uv_udp_t *h, const gw_listen *at, uint16_t *port, int rcvbuf,
                  unsigned flags)
{
    struct sockaddr_storage ss;
    int v6, rc, len = sizeof(ss);
    if ((rc = sockaddr_of(at, *port, &ss, &v6)) != 0)
        return rc;
    if ((rc = uv_udp_init_ex(loop, h, (v6 ? AF_INET6 : AF_INET) | flags)) != 0)
        return rc;
    if ((rc = reuseport((uv_handle_t *)h)) != 0 ||
        (rc = uv_udp_bind(h, (struct sockaddr *)&ss, 0)) != 0)
        return rc;
    if (rcvbuf > 0)
        uv_recv_buffer_size((uv_handle_t *)h, &rcvbuf);
    uv_udp_getsockname(h, (struct sockaddr *)&ss, &len);
    *port = port_of(&ss);
    return 0;
}

static int probe_one(const gw_config_listener *l)
{
    struct sockaddr_storage ss;
    int v6, on = 1, rc = 0;
    if ((rc = sockaddr_of(&l->at, l->at.port, &ss, &v6)) != 0)
        return rc;
    int fd =
        socket(v6 ? AF_INET6 : AF_INET,
               (l->transport == GW_TRANSPORT_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (l->transport == GW_TRANSPORT_TCP &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0)
        rc = -errno;
    else if (bind(fd, (struct sockaddr *)&ss,
                  v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

int gw_listen_probe(const gw_config *c, gw_error *err, gw_config_listener *failed)
{
    gw_config_listener *v;
    size_t n;
    int rc = gw_config_listeners(c, &v, &n);
    if (rc)
        return gw_error_set(err, rc, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        if (!v[i].at.port || (rc = probe_one(&v[i])) == 0)
            continue;
        if (failed)
            *failed = v[i];
        gw_error_set(err, rc, "%s: %s: %s port %u/%s (%s) %s: %s", c->file, v[i].path,
                     v[i].at.address, v[i].at.port,
                     v[i].transport == GW_TRANSPORT_UDP ? "udp" : "tcp", v[i].adapter,
                     rc == -EADDRINUSE ? "is already in use by another process" : "cannot be bound",
                     gw_strerror(rc));
    }
    free(v);
    return rc;
}

void gw_sockaddr_str(const struct sockaddr *sa, char *buf, size_t cap)
{
    char host[64] = "?";
    if (sa && sa->sa_family == AF_INET) {
        uv_ip4_name((const struct sockaddr_in *)sa, host, sizeof(host));
        snprintf(buf, cap, "%s:%u", host, ntohs(((const struct sockaddr_in *)sa)->sin_port));
    } else if (sa && sa->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)sa, host, sizeof(host));
        snprintf(buf, cap, "[%s]:%u", host, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    } else {
        snprintf(buf, cap, "?");
    }
}
