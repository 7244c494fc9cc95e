/* config_devices_write.c: devices.json written by the device API (config/config_devices_write.c):
 * the new array replaces the file whole, the file ends up mode 0600 even when it was 0644, no
 * temporary file is left, and a failed write (unwritable folder) leaves the old file as it was. */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "config/config.h"
#include "gateway/util/error.h"
#include "test.h"
#include "tmpdir.h"

static int count_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

int main(void)
{
    char dir[] = "/tmp/gw-devwrite-XXXXXX", path[256];
    gw_error err = {0, ""};
    struct stat st;
    json_error_t je;

    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof(path), "%s/devices.json", dir);
    gw_t_put_file(dir, "devices.json", "[]\n");
    chmod(path, 0644);

    json_t *devs =
        json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s, s:s}]", "id", "d1", "product", "thermo",
                  "secret", "a", "id", "d2", "product", "thermo", "secret", "b", "name", "two");
    CHECK_INT(gw_config_devices_write(path, devs, &err), 0);
    json_t *back = json_load_file(path, 0, &je);
    CHECK(back && json_equal(back, devs));
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    CHECK_INT(count_entries(dir), 1); /* no temporary file left */
    json_decref(back);

    /* not an array: refused, file unchanged */
    json_t *obj = json_object();
    CHECK_INT(gw_config_devices_write(path, obj, &err), GW_EINVAL);
    json_decref(obj);

    /* an unwritable folder (skipped as root, who writes anyway): the old file stays */
    if (geteuid() != 0) {
        chmod(dir, 0500);
        json_t *one =
            json_pack("[{s:s, s:s, s:s}]", "id", "d3", "product", "thermo", "secret", "c");
        CHECK(gw_config_devices_write(path, one, &err) < 0);
        CHECK_CONTAINS(err.msg, "devices.json");
        chmod(dir, 0700);
        back = json_load_file(path, 0, &je);
        CHECK(back && json_equal(back, devs));
        json_decref(back);
        json_decref(one);
    }
    /* a missing folder: an error naming the file */
    CHECK(gw_config_devices_write("/nonexistent-gw/devices.json", devs, &err) < 0);
    CHECK_CONTAINS(err.msg, "devices.json");

    json_decref(devs);
    gw_t_rm_tree(dir);
    TEST_MAIN_END();
}
