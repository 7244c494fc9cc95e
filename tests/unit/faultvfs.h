/* faultvfs.h: an SQLite VFS shim over the default one, for the unit tests only (header-only: each
 * unit test file is an executable of its own). It counts xWrite, xSync, xLock, xShmLock, xTruncate
 * and xRead calls per kind and, when armed, fails the k-th call of one kind (and the count - 1
 * after it) with a chosen code (SQLITE_IOERR_*, SQLITE_FULL, SQLITE_BUSY). fv_install() makes it
 * the process's default VFS, so the store opens on it without a VFS name; "unix" stays available
 * to test code that must read past the faults. */
#ifndef GW_TEST_FAULTVFS_H
#define GW_TEST_FAULTVFS_H

#include <sqlite3.h>
#include <string.h>

typedef enum fv_kind {
    FV_WRITE,
    FV_SYNC,
    FV_LOCK,
    FV_SHMLOCK,
    FV_TRUNCATE,
    FV_READ,
    FV__COUNT
} fv_kind;

static const char *const fv_kind_names[FV__COUNT]
    __attribute__((unused)) = {"write", "sync", "lock", "shm-lock", "truncate", "read"};

typedef struct fv_file {
    sqlite3_file base;
    sqlite3_file *real; /* follows this struct in the same allocation */
} fv_file;

static struct {
    sqlite3_vfs vfs;
    sqlite3_vfs *real;
    sqlite3_io_methods io;
    /* armed: calls of kind `kind` numbered from 1 since fv_arm; calls at..at+count-1 fail */
    int armed;
    fv_kind kind;
    long at, count;
    int rc;
    long calls[FV__COUNT]; /* since fv_arm (or fv_reset) */
    long hits;             /* calls failed since fv_arm */
} fv;

/* Whether this call of kind k fails (and with which code). Any thread. */
static inline int fv_check(fv_kind k)
{
    long n = __atomic_add_fetch(&fv.calls[k], 1, __ATOMIC_SEQ_CST);
    long at = __atomic_load_n(&fv.at, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&fv.armed, __ATOMIC_SEQ_CST) ||
        __atomic_load_n(&fv.kind, __ATOMIC_SEQ_CST) != k)
        return SQLITE_OK;
    if (n < at || n - at >= __atomic_load_n(&fv.count, __ATOMIC_SEQ_CST))
        return SQLITE_OK;
    __atomic_add_fetch(&fv.hits, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&fv.rc, __ATOMIC_SEQ_CST);
}

/* Fails calls at..at+count-1 of kind k (numbered from 1 from now) with rc. */
static inline void fv_arm(fv_kind k, long at, long count, int rc)
{
    __atomic_store_n(&fv.armed, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < FV__COUNT; i++)
        __atomic_store_n(&fv.calls[i], 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fv.hits, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fv.kind, k, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fv.at, at, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fv.count, count, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fv.rc, rc, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fv.armed, 1, __ATOMIC_SEQ_CST);
}

static inline void fv_disarm(void)
{
    __atomic_store_n(&fv.armed, 0, __ATOMIC_SEQ_CST);
}

static inline long fv_calls(fv_kind k)
{
    return __atomic_load_n(&fv.calls[k], __ATOMIC_SEQ_CST);
}

static inline long fv_hits(void)
{
    return __atomic_load_n(&fv.hits, __ATOMIC_SEQ_CST);
}

#define FV_REAL(f) (((fv_file *)(f))->real)

static inline int fv_close(sqlite3_file *f)
{
    int rc = FV_REAL(f)->pMethods ? FV_REAL(f)->pMethods->xClose(FV_REAL(f)) : SQLITE_OK;
    return rc;
}

static inline int fv_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    int rc = fv_check(FV_READ);
    return rc ? rc : FV_REAL(f)->pMethods->xRead(FV_REAL(f), buf, n, off);
}

static inline int fv_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    int rc = fv_check(FV_WRITE);
    return rc ? rc : FV_REAL(f)->pMethods->xWrite(FV_REAL(f), buf, n, off);
}

static inline int fv_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    int rc = fv_check(FV_TRUNCATE);
    return rc ? rc : FV_REAL(f)->pMethods->xTruncate(FV_REAL(f), size);
}

static inline int fv_sync(sqlite3_file *f, int flags)
{
    int rc = fv_check(FV_SYNC);
    return rc ? rc : FV_REAL(f)->pMethods->xSync(FV_REAL(f), flags);
}

static inline int fv_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return FV_REAL(f)->pMethods->xFileSize(FV_REAL(f), size);
}

static inline int fv_lock(sqlite3_file *f, int level)
{
    int rc = fv_check(FV_LOCK);
    return rc ? rc : FV_REAL(f)->pMethods->xLock(FV_REAL(f), level);
}

static inline int fv_unlock(sqlite3_file *f, int level)
{
    return FV_REAL(f)->pMethods->xUnlock(FV_REAL(f), level);
}

static inline int fv_check_reserved(sqlite3_file *f, int *out)
{
    return FV_REAL(f)->pMethods->xCheckReservedLock(FV_REAL(f), out);
}

static inline int fv_fcntl(sqlite3_file *f, int op, void *arg)
{
    return FV_REAL(f)->pMethods->xFileControl(FV_REAL(f), op, arg);
}

static inline int fv_sector(sqlite3_file *f)
{
    return FV_REAL(f)->pMethods->xSectorSize(FV_REAL(f));
}

static inline int fv_devchar(sqlite3_file *f)
{
    return FV_REAL(f)->pMethods->xDeviceCharacteristics(FV_REAL(f));
}

static inline int fv_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **p)
{
    return FV_REAL(f)->pMethods->xShmMap(FV_REAL(f), pg, pgsz, extend, p);
}

static inline int fv_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    /* only acquisitions fail: an unlock that fails would leave a lock SQLite thinks it dropped */
    int rc = (flags & SQLITE_SHM_LOCK) ? fv_check(FV_SHMLOCK) : SQLITE_OK;
    return rc ? rc : FV_REAL(f)->pMethods->xShmLock(FV_REAL(f), off, n, flags);
}

static inline void fv_shm_barrier(sqlite3_file *f)
{
    FV_REAL(f)->pMethods->xShmBarrier(FV_REAL(f));
}

static inline int fv_shm_unmap(sqlite3_file *f, int del)
{
    return FV_REAL(f)->pMethods->xShmUnmap(FV_REAL(f), del);
}

static inline int fv_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return FV_REAL(f)->pMethods->xFetch(FV_REAL(f), off, n, pp);
}

static inline int fv_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return FV_REAL(f)->pMethods->xUnfetch(FV_REAL(f), off, p);
}

static inline int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                          int *out)
{
    fv_file *f = (fv_file *)file;
    (void)vfs;
    f->real = (sqlite3_file *)(f + 1);
    memset(f->real, 0, (size_t)fv.real->szOsFile);
    file->pMethods = NULL;
    int rc = fv.real->xOpen(fv.real, name, f->real, flags, out);
    if (f->real->pMethods) { /* xClose must be called, even after a failed open */
        fv.io.iVersion = f->real->pMethods->iVersion;
        file->pMethods = &fv.io;
    }
    return rc;
}

/* Everything else goes to the real VFS. */
static inline int fv_delete(sqlite3_vfs *v, const char *n, int sync)
{
    (void)v;
    return fv.real->xDelete(fv.real, n, sync);
}
static inline int fv_access(sqlite3_vfs *v, const char *n, int flags, int *out)
{
    (void)v;
    return fv.real->xAccess(fv.real, n, flags, out);
}
static inline int fv_fullname(sqlite3_vfs *v, const char *n, int len, char *out)
{
    (void)v;
    return fv.real->xFullPathname(fv.real, n, len, out);
}
static inline int fv_random(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return fv.real->xRandomness(fv.real, n, out);
}
static inline int fv_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return fv.real->xSleep(fv.real, us);
}
static inline int fv_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return fv.real->xCurrentTime(fv.real, out);
}
static inline int fv_lasterr(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return fv.real->xGetLastError(fv.real, n, out);
}
static inline int fv_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return fv.real->xCurrentTimeInt64(fv.real, out);
}

/* Registers "faultvfs" over the current default VFS and makes it the default. 0 or an SQLite
 * code. Call once, before any database is opened. */
static inline int fv_install(void)
{
    fv.real = sqlite3_vfs_find(NULL);
    if (!fv.real)
        return SQLITE_ERROR;
    fv.vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(fv_file) + fv.real->szOsFile,
        .mxPathname = fv.real->mxPathname,
        .zName = "faultvfs",
        .xOpen = fv_open,
        .xDelete = fv_delete,
        .xAccess = fv_access,
        .xFullPathname = fv_fullname,
        .xDlOpen = NULL,
        .xRandomness = fv_random,
        .xSleep = fv_sleep,
        .xCurrentTime = fv_time,
        .xGetLastError = fv_lasterr,
        .xCurrentTimeInt64 = fv_time64,
    };
    fv.io = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = fv_close,
        .xRead = fv_read,
        .xWrite = fv_write,
        .xTruncate = fv_truncate,
        .xSync = fv_sync,
        .xFileSize = fv_size,
        .xLock = fv_lock,
        .xUnlock = fv_unlock,
        .xCheckReservedLock = fv_check_reserved,
        .xFileControl = fv_fcntl,
        .xSectorSize = fv_sector,
        .xDeviceCharacteristics = fv_devchar,
        .xShmMap = fv_shm_map,
        .xShmLock = fv_shm_lock,
        .xShmBarrier = fv_shm_barrier,
        .xShmUnmap = fv_shm_unmap,
        .xFetch = fv_fetch,
        .xUnfetch = fv_unfetch,
    };
    return sqlite3_vfs_register(&fv.vfs, 1);
}

#endif
