/* tmpdir.h: a unit test's scratch folder (config files, an SQLite database): files written into
 * it, and the folder removed with everything in it at the end. Header-only: every unit test file
 * is its own executable. */
#ifndef GW_TEST_TMPDIR_H
#define GW_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static inline void gw_t_put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static inline int gw_t_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* Removes dir and everything in it (the store's -wal/-shm files included). */
static inline void gw_t_rm_tree(const char *dir)
{
    nftw(dir, gw_t_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
