/* sdnotify.c: gw_sd_notify's datagram protocol: nothing without NOTIFY_SOCKET, one datagram to a
 * socket path or an abstract name ('@'), refusals of names it cannot use, never blocking when
 * the receiver's queue is full. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "gateway/util/sdnotify.h"
#include "test.h"

/* A datagram socket bound at name ('@': abstract), non-blocking; -1 on failure. */
static int bind_at(const char *name)
{
    struct sockaddr_un sa;
    size_t n = strlen(name);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, name, n);
    if (name[0] == '@')
        sa.sun_path[0] = 0;
    if (bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) <
        0) {
        perror("bind");
        close(fd);
        return -1;
    }
    return fd;
}

static const char *recv_one(int fd)
{
    static char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    if (n < 0)
        return "(nothing)";
    buf[n] = 0;
    return buf;
}

int main(void)
{
    char path[128], name[128], longname[200];

    unsetenv("NOTIFY_SOCKET");
    CHECK_INT(gw_sd_notify("READY=1"), 1); /* not under systemd */
    setenv("NOTIFY_SOCKET", "", 1);
    CHECK_INT(gw_sd_notify("READY=1"), 1);

    /* a socket path */
    snprintf(path, sizeof(path), "/tmp/iotgw-sdnotify-%ld.sock", (long)getpid());
    unlink(path);
    int fd = bind_at(path);
    CHECK(fd >= 0);
    setenv("NOTIFY_SOCKET", path, 1);
    CHECK_INT(gw_sd_notify("READY=1"), 0);
    CHECK_STR(recv_one(fd), "READY=1");
    CHECK_INT(gw_sd_notify("STOPPING=1"), 0);
    CHECK_STR(recv_one(fd), "STOPPING=1");
    CHECK_INT(gw_sd_notify_reloading(), 0);
    const char *r = recv_one(fd);
    CHECK(strncmp(r, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0 && strtoull(r + 27, NULL, 10) > 0);
    CHECK_STR(recv_one(fd), "(nothing)");

    /* a full receive queue: an error at once, never a wait */
    int sent = 0, rc = 0;
    while (sent < 100000 && (rc = gw_sd_notify("WATCHDOG=1")) == 0)
        sent++;
    CHECK(sent > 0 && (rc == -EAGAIN || rc == -EWOULDBLOCK));
    close(fd);
    unlink(path);

    /* nobody there */
    CHECK_INT(gw_sd_notify("READY=1"), -ENOENT);

    /* an abstract name */
    snprintf(name, sizeof(name), "@iotgw-sdnotify-%ld", (long)getpid());
    fd = bind_at(name);
    CHECK(fd >= 0);
    setenv("NOTIFY_SOCKET", name, 1);
    CHECK_INT(gw_sd_notify("READY=1"), 0);
    CHECK_STR(recv_one(fd), "READY=1");
    close(fd);

    /* names it cannot use */
    setenv("NOTIFY_SOCKET", "relative/notify.sock", 1);
    CHECK_INT(gw_sd_notify("READY=1"), -EINVAL);
    memset(longname, 'x', sizeof(longname) - 1);
    longname[0] = '/';
    longname[sizeof(longname) - 1] = 0;
    setenv("NOTIFY_SOCKET", longname, 1);
    CHECK_INT(gw_sd_notify("READY=1"), -EINVAL);
    TEST_MAIN_END();
}
