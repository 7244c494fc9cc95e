/* config_devices_write.c: writes devices.json atomically for the device API: the whole array into
 * a temporary file in the same folder (mode 0600: it may hold secrets in clear), fsync, rename over
 * devices.json, fsync the folder; a crash leaves the old file or the new one, never a mix. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../gateway/util/error.h"

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The folder of path ("." when it has none), fsync'd so that the rename itself is durable. */
static int sync_dir(const char *path)
{
    char dir[4096] = ".";
    const char *slash = strrchr(path, '/');
    if (slash == path) {
        strcpy(dir, "/");
    } else if (slash) {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int gw_config_devices_write(const char *path, const json_t *devices, gw_error *err)
{
    char tmp[4096];
    char *text = NULL;
    int fd = -1, rc;

    if (!json_is_array(devices))
        return gw_error_set(err, GW_EINVAL, "devices must be an array");
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return gw_error_set(err, -ENAMETOOLONG, "%s: path too long", path);
    if (!(text = json_dumps(devices, JSON_INDENT(2) | JSON_PRESERVE_ORDER))) {
        rc = gw_error_set(err, GW_ENOMEM, "out of memory");
        goto fail;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = gw_error_set(err, -errno, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    if ((rc = fchmod(fd, 0600) < 0 ? -errno : 0) || (rc = write_all(fd, text, strlen(text))) ||
        (rc = write_all(fd, "\n", 1)) || (rc = fsync(fd) < 0 ? -errno : 0)) {
        gw_error_set(err, rc, "%s: %s", tmp, strerror(-rc));
        goto fail;
    }
    rc = close(fd) < 0 ? -errno : 0;
    fd = -1;
    if (rc || rename(tmp, path) < 0) {
        rc = rc ? rc : -errno;
        gw_error_set(err, rc, "%s: %s", path, strerror(-rc));
        goto fail;
    }
    free(text);
    if ((rc = sync_dir(path)) != 0) /* renamed: the new file is in place, maybe not durable yet */
        return gw_error_set(err, rc, "%s: folder fsync: %s", path, strerror(-rc));
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(text);
    return rc;
}
