/* sqlite_floor.c: what SQLite alone costs per stored event, the floor under the gateway's writer
 * (issue 19). One thread, no gateway code on the hot path: the gateway's own schema and pragmas
 * (gw__store_schema: WAL, synchronous=NORMAL, page size, cache), then ROWS property-report rows of
 * the shape bench_frames.py stores (device, product, kind, payload of PAYLOAD bytes, the history
 * link), committed BATCH rows (rounded down to whole statements) to a transaction with the writer's
 * multi-row INSERT of GROUP rows per statement and its static binds. Prints CPU per row (user and
 * kernel apart, getrusage) and the wall rate; the writer's own figure (`writer_us_per_msg` of
 * bench_frames.py) on the same box is what the gateway adds on top (queue, state notes, history
 * heads, completions).
 * Usage: sqlite_floor [--rows N] [--batch N] [--group N] [--payload N] [--devices N]
 *                     [--page-size N] [--dir D] [--smoke]
 * Prints `bench=sqlite_floor ... us_per_row=... user_us_per_row=... sys_us_per_row=...`. */
#include <sqlite3.h>
#include <sys/resource.h>

#define LOADGEN_PROG "sqlite_floor"
#include "loadgen.h" /* now_s, parse_opts */

#include "config/config.h"
#include "storage/internal.h"

static void cpu_s(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void usage(void)
{
    fprintf(stderr, "usage: sqlite_floor [--rows N] [--batch N] [--group N] [--payload N]"
                    " [--devices N] [--page-size N] [--dir D] [--smoke]\n");
    exit(2);
}

static int sql_fail(sqlite3 *db, const char *what)
{
    fprintf(stderr, "sqlite_floor: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
    return 1;
}

int main(int argc, char **argv)
{
    long rows = 0, batch = 1000, group = GW__INS_MAX, payload = 115, devices = 100, page = 16384;
    const char *dir = "/tmp";
    bool smoke = false;
    const optdef opts[] = {{"rows", 'l', &rows},       {"batch", 'l', &batch},
                           {"group", 'l', &group},     {"payload", 'l', &payload},
                           {"devices", 'l', &devices}, {"page-size", 'l', &page},
                           {"dir", 's', &dir},         {"smoke", 'b', &smoke}};
    parse_opts(argc, argv, opts, sizeof(opts) / sizeof(opts[0]), usage);
    if (!rows)
        rows = smoke ? 20000 : 3000000;
    if (rows < 1 || batch < 1 || group < 1 || group > 999 / 9 || payload < 2 || payload > 4000 ||
        devices < 1 || devices > 100000) {
        fprintf(stderr, "sqlite_floor: an argument is out of range\n");
        return 2;
    }

    char path[512];
    snprintf(path, sizeof(path), "%s/sqlite_floor.%d.db", dir, (int)getpid());
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); /* as the gateway */
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        return sql_fail(db, "open");
    gw_store_cfg cfg = {
        .synchronous = GW_SYNC_NORMAL, .cache_kb = 8192, .page_size = (uint32_t)page};
    gw_error err = {0};
    if (gw__store_schema(db, &cfg, &err)) {
        fprintf(stderr, "sqlite_floor: schema: %s\n", err.msg);
        return 1;
    }

    /* the writer's statement: INSERT ... VALUES (9 columns) x group */
    size_t cap = 128 + (size_t)group * 20;
    char *sql = malloc(cap);
    int len = snprintf(sql, cap,
                       "INSERT INTO events(ts, rx_ts, device, product, kind, name,"
                       " msg_id, payload, prev) VALUES");
    for (long r = 0; r < group; r++)
        len += snprintf(sql + len, cap - (size_t)len, "%s(?,?,?,?,?,?,?,?,?)", r ? "," : "");
    sqlite3_stmt *ins, *begin, *commit;
    if (sqlite3_prepare_v3(db, sql, len + 1, SQLITE_PREPARE_PERSISTENT, &ins, NULL) ||
        sqlite3_prepare_v2(db, "BEGIN", -1, &begin, NULL) ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL))
        return sql_fail(db, "prepare");
    free(sql);

    /* a payload like the meter's: {"p1":123.45,...} of the asked size */
    char *text = malloc((size_t)payload + 1);
    int n = 0;
    text[n++] = '{';
    for (int k = 0; n < payload - 16; k++)
        n += snprintf(text + n, (size_t)payload + 1 - (size_t)n, "%s\"p%d\":%d.%02d", k ? "," : "",
                      k, 200 + k * 7, k * 13 % 100);
    while (n < payload - 1)
        text[n++] = ' ';
    text[n++] = '}';
    text[n] = 0;
    char(*dev)[24] = malloc((size_t)devices * sizeof(*dev));
    for (long d = 0; d < devices; d++)
        snprintf(dev[d], sizeof(dev[d]), "mtr%05ld", d);
    int64_t *last = calloc((size_t)devices, sizeof(*last));

    double u0, s0, t0 = now_s();
    cpu_s(&u0, &s0);
    int64_t id = 1, ts = 1796688955000;
    long done = 0;
    while (done < rows) {
        if (sqlite3_step(begin) != SQLITE_DONE)
            return sql_fail(db, "begin");
        sqlite3_reset(begin);
        long stmts = batch / group ? batch / group : 1; /* whole statements: batch rounded down */
        for (long k = 0; k < stmts && done < rows; k++) {
            for (int r = 0; r < group; r++, id++) {
                int c = r * 9;
                long d = id % devices;
                sqlite3_bind_int64(ins, c + 1, ts + id);
                sqlite3_bind_int64(ins, c + 2, ts + id);
                sqlite3_bind_text(ins, c + 3, dev[d], -1, SQLITE_STATIC);
                sqlite3_bind_text(ins, c + 4, "meter-tcp", 9, SQLITE_STATIC);
                sqlite3_bind_text(ins, c + 5, "property", 8, SQLITE_STATIC);
                sqlite3_bind_null(ins, c + 6);
                sqlite3_bind_null(ins, c + 7);
                sqlite3_bind_text(ins, c + 8, text, n, SQLITE_STATIC);
                if (last[d])
                    sqlite3_bind_int64(ins, c + 9, last[d]);
                else
                    sqlite3_bind_null(ins, c + 9);
                last[d] = id;
            }
            if (sqlite3_step(ins) != SQLITE_DONE)
                return sql_fail(db, "insert");
            sqlite3_reset(ins);
            done += group;
        }
        if (sqlite3_step(commit) != SQLITE_DONE)
            return sql_fail(db, "commit");
        sqlite3_reset(commit);
    }
    double u1, s1, t1 = now_s();
    cpu_s(&u1, &s1);
    double per = 1e6 / (double)done;
    printf("bench=sqlite_floor rows=%ld batch=%ld group=%ld payload=%ld devices=%ld page_size=%ld"
           " us_per_row=%.3f user_us_per_row=%.3f sys_us_per_row=%.3f rows_per_s=%.0f"
           " sqlite=%s\n",
           done, batch, group, payload, devices, page, ((u1 - u0) + (s1 - s0)) * per,
           (u1 - u0) * per, (s1 - s0) * per, (double)done / (t1 - t0), sqlite3_libversion());
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    static const char *const files[] = {"", "-wal", "-shm"}; /* the database and its WAL files */
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char f[600];
        snprintf(f, sizeof(f), "%s%s", path, files[i]);
        unlink(f);
    }
    free(text);
    free(dev);
    free(last);
    return done > 0 ? 0 : 1;
}
