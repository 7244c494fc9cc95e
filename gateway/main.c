/* main.c: the iotgw binary: command line, configuration check, start-up in order (store, loops,
 * admin, --ready-fd), signals, and the orderly shutdown that loses nothing accepted. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <uv.h>

#include "../config/config.h"
#include "admin/api_hub.h"
#include "admin/api_server.h"
#include "command/command.h"
#include "core/listen.h"
#include "util/alloc.h"
#include "util/auth.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/sdnotify.h"
#include "util/version.h"
#include "north/north.h"
#include "registry.h"
#include "core/runtime.h"
#include "reload/reload.h"

#define SHUTDOWN_WAIT_MS 15000

typedef struct gw_main {
    gw_config *cfg;
    gw_store *store;
    gw_runtime *rt;
    gw_north *north;
    gw_commands *commands; /* downstream commands: the cloud's (north) and the local API's */
    gw_api_server *api;
    gw_api_hub *hub;
    gw_api_ctx api_ctx; /* what the management API's handlers reach */
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    int stopping;
    gw_reload *reload;
    uv_signal_t sighup;
} gw_main;

/* OpenSSL's allocations (the CoAP adapter's DTLS and the north link's TLS, one
 * process-wide allocator) are counted in iotgw_memory_bytes{area="tls"}. CRYPTO_realloc hands
 * size 0 to a custom realloc as is: that frees. */
static void *tls_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return gw_malloc(GW_AREA_TLS, n);
}

static void *tls_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    if (n == 0) {
        gw_free(GW_AREA_TLS, p);
        return NULL;
    }
    return gw_realloc(GW_AREA_TLS, p, n);
}

static void tls_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    gw_free(GW_AREA_TLS, p);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: iotgw -c FILE [--check-config] [--ready-fd N] [--version]\n"
               "       iotgw --print-config-reference | --hash-token [TOKEN] | --hash-secret [S]\n"
               "  -c, --config FILE   gateway.json (products and devices are found from it)\n"
               "  --check-config      validate the whole configuration and exit (0 ok, 2 errors)\n"
               "  --ready-fd N        write bound listeners and \"ready\" to fd N once serving\n"
               "  --print-config-reference  print every gateway.json key with its type, default,\n"
               "                      range and meaning (markdown) and exit (alias:\n"
               "                      --config-reference)\n"
               "  --hash-token [TOKEN] print the SHA-256 of TOKEN (or of stdin's first line) for\n"
               "                      admin.tokens[].sha256 and exit\n");
    fprintf(f,
            "  --hash-secret [S]   print a device secret's hash for devices.json (S or stdin)\n");
}

/* Initialises the adapter of every section of gateway.json's "adapters" into rt. */
static int init_adapters(const gw_config *cfg, gw_runtime *rt, gw_diag *diag)
{
    const char *name;
    json_t *section;
    int errors = 0;
    json_object_foreach(cfg->adapters, name, section)
    {
        const gw_adapter_ops *ops = gw_registry_adapter(name);
        if (!ops)
            continue; /* the loader already reported it */
        gw_adapter *a = gw_runtime_add_adapter(rt, ops);
        if (!a) {
            gw_diag_add(diag, cfg->file, "adapters", "too many adapters");
            return 1;
        }
        if (ops->init(a, section, cfg, diag) != 0)
            errors++;
        if (!rt && ops->uninit)
            ops->uninit(a);
    }
    return errors;
}

/* iotgw --hash-token: the hex SHA-256 of the token (argument, or stdin's first line). */
static int hash_token(const char *tok)
{
    char line[4096], hex[65];
    if (!tok) {
        if (!fgets(line, sizeof(line), stdin))
            return 1;
        line[strcspn(line, "\r\n")] = 0;
        tok = line;
    }
    if (!*tok) {
        fprintf(stderr, "iotgw: empty token\n");
        return 1;
    }
    gw_api_hash_token(tok, hex);
    printf("%s\n", hex);
    return 0;
}

static void print_diag(const gw_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "%s\n", d->msgs[i]);
}

static void mkdir_parents(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        mkdir(buf, 0755);
        *p = '/';
    }
}

/* Tells systemd (Type=notify, $NOTIFY_SOCKET) the state; a failure is logged, never fatal. */
static void notify_systemd(const char *state)
{
    int rc = state ? gw_sd_notify(state) : gw_sd_notify_reloading(); /* NULL: RELOADING=1 */
    if (rc < 0)
        GW_LOG_WARN("main", NULL, NULL, "cannot notify systemd", "state=%s error=\"%s\"",
                    state ? state : "RELOADING=1", strerror(-rc));
}

/* The file descriptors the configuration may need: one per device connection (max_connections),
 * two per API connection (a command waiting for its device holds a dup of its socket), and about
 * 14 per loop and 20 more (listeners, epoll, eventfds, pipes, the database's files) measured on the
 * shipped config. Below it (LimitNOFILE, ulimit -n) accept() fails with EMFILE before
 * max_connections is reached: say so at start (docs/INSTALL.md). */
static void check_fd_limit(const gw_config *cfg, unsigned n_loops)
{
    struct rlimit rl;
    uint64_t need = (uint64_t)cfg->max_connections + 16ull * n_loops + 64;
    if (cfg->admin_enabled)
        need += 2ull * cfg->admin_http.max_connections;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        GW_LOG_WARN("main", NULL, NULL,
                    "open file limit below what max_connections needs: raise LimitNOFILE or "
                    "lower max_connections",
                    "nofile=%llu need=%llu max_connections=%u", (unsigned long long)rl.rlim_cur,
                    (unsigned long long)need, cfg->max_connections);
}

static int wait_until_drained(gw_main *m, int want_no_connections)
{
    for (int waited = 0; waited < SHUTDOWN_WAIT_MS; waited += 5) {
        if (gw_store_depth(m->store) == 0 &&
            (!want_no_connections || gw_metric_get(GW_M_CONN_ACTIVE) == 0))
            return 0;
        uv_sleep(5);
    }
    return -1;
}

/* Stop accepting and reading; let every accepted message commit and be acknowledged; close
 * sessions (offline events); commit those; stop the writer; stop the loops. */
static void shutdown_gateway(gw_main *m, const char *why)
{
    if (m->stopping++)
        return;
    GW_LOG_INFO("main", NULL, NULL, "shutting down", "signal=%s", why);
    notify_systemd("STOPPING=1");
    gw_runtime_stop_accepting(m->rt);
    gw_store_release_held(m->store); /* held for the outbox budget: committed, not lost */
    if (wait_until_drained(m, 0))
        GW_LOG_WARN("main", NULL, NULL, "store did not drain in time", "depth=%lld",
                    (long long)gw_store_depth(m->store));
    gw_runtime_close_sessions(m->rt);
    if (wait_until_drained(m, 1))
        GW_LOG_WARN("main", NULL, NULL, "sessions did not close in time", "depth=%lld",
                    (long long)gw_store_depth(m->store));
    gw_north_stop(m->north); /* its last acknowledgements reach the store before it closes */
    gw_commands_detach(m->commands);
    gw_store_close(m->store);
    m->store = NULL;
    gw_runtime_join(m->rt);
    gw_api_server_stop(m->api);
    gw_api_hub_stop(m->hub);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_close((uv_handle_t *)&m->sighup, NULL);
}

/* SIGHUP: re-read and apply the configuration (gateway/reload); it logs the outcome. */
static void on_sighup(uv_signal_t *h, int signum)
{
    gw_main *m = h->data;
    json_t *report = NULL;
    (void)signum;
    if (m->stopping)
        return;
    /* systemctl reload (ExecReload sends SIGHUP) waits for READY=1 after RELOADING=1; a reload
     * that fails validation changes nothing and the gateway is ready again as before. */
    notify_systemd(NULL);
    gw_reload_from_disk(m->reload, &report);
    json_decref(report);
    notify_systemd("READY=1");
}

static void on_signal(uv_signal_t *h, int signum)
{
    shutdown_gateway(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int write_ready(int fd, gw_runtime *rt, const gw_api_server *api)
{
    char buf[4096];
    int n = snprintf(buf, sizeof(buf), "%.*s", (int)rt->listeners_len, rt->listeners);
    n += (int)gw_api_server_ready_lines(api, buf + n, sizeof(buf) - (size_t)n - 8);
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "ready\n");
    ssize_t w = write(fd, buf, (size_t)n);
    close(fd);
    return w == n ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *cfg_path = NULL;
    int check_only = 0, ready_fd = -1;
    gw_main m;
    gw_diag diag = {0};
    gw_error err = {0, ""};

    gw_log_limit_thread(0); /* the main thread's lines (start-up, config, shutdown) are all kept */
    /* before anything can call into OpenSSL (it refuses once it has allocated) */
    int tls_counted = CRYPTO_set_mem_functions(tls_malloc, tls_realloc, tls_free);
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (!strcmp(argv[i], "--check-config")) {
            check_only = 1;
        } else if (!strcmp(argv[i], "--ready-fd") && i + 1 < argc) {
            ready_fd = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--print-config-reference") ||
                   !strcmp(argv[i], "--config-reference")) {
            int undocumented = gw_config_reference(stdout, gw_registry_config_plugins());
            if (undocumented)
                fprintf(stderr,
                        "iotgw: %d config keys have no meaning (the .doc of their "
                        "gw_cfg_field)\n",
                        undocumented);
            return undocumented ? 1 : 0;
        } else if (!strcmp(argv[i], "--hash-secret")) {
            return gw_secret_hash_main(i + 1 < argc ? argv[i + 1] : NULL, stdin, stdout);
        } else if (!strcmp(argv[i], "--hash-token")) {
            return hash_token(i + 1 < argc ? argv[i + 1] : NULL);
        } else if (!strcmp(argv[i], "--version")) {
            printf("iotgw %s (libuv %s, sqlite %s, jansson %s)\n", GW_VERSION, uv_version_string(),
                   sqlite3_libversion(), JANSSON_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 1;
        }
    }
    if (!cfg_path) {
        usage(stderr);
        return 1;
    }
    if (gw_registry_check(&err)) {
        fprintf(stderr, "iotgw: %s\n", err.msg);
        return 1;
    }

    memset(&m, 0, sizeof(m));
    /* The loader also checks every adapter's section (init + uninit on a scratch adapter). */
    if (gw_config_load(cfg_path, gw_registry_config_plugins(), &m.cfg, &diag) != 0 || diag.n > 0) {
        print_diag(&diag);
        fprintf(stderr, "iotgw: %zu configuration error%s\n", diag.n, diag.n == 1 ? "" : "s");
        gw_diag_free(&diag);
        gw_config_free(m.cfg);
        return 2;
    }
    char id_only[512];
    size_t n_id_only = gw_config_device_id_products(m.cfg, id_only, sizeof(id_only));
    if (check_only) {
        if (n_id_only)
            fprintf(stderr,
                    "iotgw: warning: %zu product%s authenticate%s devices by their id alone, no "
                    "secret (auth.mode \"device-id\"): %s\n",
                    n_id_only, n_id_only == 1 ? "" : "s", n_id_only == 1 ? "s" : "", id_only);
        printf("config ok: %zu products, %zu devices\n", m.cfg->n_products, m.cfg->n_devices);
        gw_config_free(m.cfg);
        return 0;
    }
    gw_log_level = m.cfg->log_level;
    gw_log_rate_limit = m.cfg->log_rate_limit;
    if (n_id_only) {
        char q[600];
        GW_LOG_WARN("main", NULL, NULL,
                    "products authenticate devices by their id alone, no secret (auth.mode "
                    "device-id): any device that knows a registered id gets in",
                    "products=%s", gw_log_quote(q, sizeof(q), id_only));
    }
    if (!tls_counted)
        GW_LOG_WARN("main", NULL, NULL,
                    "OpenSSL allocated before start-up; its memory is not counted", NULL);
    gw_metrics_thread_init(0);
    signal(SIGPIPE, SIG_IGN);
    /* Before the database is opened or any loop binds (with SO_REUSEPORT, which would share a
     * port another gateway holds): every configured port must be free. */
    gw_config_listener busy;
    memset(&busy, 0, sizeof(busy));
    if (gw_listen_probe(m.cfg, &err, &busy) != 0) {
        char q[400];
        GW_LOG_ERROR("main", NULL, NULL, "cannot listen: address in use or not available",
                     "adapter=%s address=%s port=%u transport=%s path=%s error=%s", busy.adapter,
                     busy.at.address, busy.at.port,
                     busy.transport == GW_TRANSPORT_UDP ? "udp" : "tcp", busy.path,
                     gw_log_quote(q, sizeof(q), err.msg));
        gw_config_free(m.cfg);
        return 1;
    }

    int rc = 1;
    mkdir_parents(m.cfg->store.path);
    uv_loop_init(&m.loop);
    if (gw_store_open(&m.store, m.cfg, &err) || gw_runtime_create(&m.rt, m.cfg, m.store, &err) ||
        gw_commands_create(&m.commands, m.rt, NULL, &err) ||
        !(m.rt->commands = m.commands) /* the table exists with or without north */ ||
        gw_north_create(&m.north, m.cfg, m.rt, m.store, &err) ||
        gw_commands_attach(m.commands, &m.loop, !m.north)) {
        GW_LOG_ERROR("main", NULL, NULL, "start-up failed", "error=\"%s\"", err.msg);
        goto out;
    }
    if (init_adapters(m.cfg, m.rt, &diag) > 0) {
        print_diag(&diag);
        goto out;
    }
    m.api_ctx.loop = &m.loop;
    m.api_ctx.rt = m.rt;
    m.api_ctx.cfg = m.cfg;
    m.api_ctx.store = m.store;
    /* the API's own read-only connection (device lists, state, history) */
    if (m.cfg->admin_enabled && gw_store_reader_open(&m.api_ctx.reader, m.cfg, &err)) {
        GW_LOG_ERROR("main", NULL, NULL, "start-up failed", "error=\"%s\"", err.msg);
        goto out;
    }
    m.api_ctx.started_ms = (int64_t)uv_now(&m.loop);
    if (m.cfg->admin_enabled && gw_api_hub_create(&m.hub, &m.loop, m.store, m.cfg) != 0) {
        GW_LOG_ERROR("main", NULL, NULL, "start-up failed", "error=\"out of memory\"");
        goto out;
    }
    m.api_ctx.hub = m.hub;
    m.api_ctx.commands = m.commands;
    if (m.cfg->admin_enabled && gw_api_server_start(&m.api, &m.api_ctx, m.cfg, &err) != 0) {
        GW_LOG_ERROR("main", NULL, NULL, "admin endpoint failed", "error=\"%s\"", err.msg);
        rc = 1;
        goto out;
    }
    if (gw_reload_create(&m.reload, m.cfg, m.rt, &m.api_ctx.cfg) != 0) {
        GW_LOG_ERROR("main", NULL, NULL, "start-up failed", "error=\"out of memory\"");
        goto out;
    }
    m.api_ctx.reload = m.reload;
    if (gw_runtime_start(m.rt, &err) || gw_north_start(m.north, &err)) {
        GW_LOG_ERROR("main", NULL, NULL, "start-up failed", "error=\"%s\"", err.msg);
        rc = 1;
        goto out;
    }
    uv_signal_init(&m.loop, &m.sigterm);
    uv_signal_init(&m.loop, &m.sigint);
    m.sigterm.data = m.sigint.data = &m;
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_init(&m.loop, &m.sighup);
    m.sighup.data = &m;
    uv_signal_start(&m.sighup, on_sighup, SIGHUP);
    check_fd_limit(m.cfg, m.rt->n_loops);
    GW_LOG_INFO("main", NULL, NULL, "iotgw started",
                "version=%s loops=%u products=%zu devices=%zu db=%s", GW_VERSION, m.rt->n_loops,
                m.cfg->n_products, m.cfg->n_devices, m.cfg->store.path);
    if (m.cfg->admin_enabled)
        GW_LOG_INFO("main", NULL, NULL, "admin endpoint", "address=%s port=%d",
                    m.cfg->admin.address, gw_api_server_port(m.api));
    if (ready_fd >= 0 && write_ready(ready_fd, m.rt, m.api) != 0)
        GW_LOG_WARN("main", NULL, NULL, "cannot write to --ready-fd", "fd=%d", ready_fd);
    notify_systemd("READY=1"); /* every listener is bound (deploy/iotgw.service: Type=notify) */
    uv_run(&m.loop, UV_RUN_DEFAULT);
    rc = 0;
    GW_LOG_INFO("main", NULL, NULL, "stopped", "events_committed=%lld",
                (long long)gw_metric_get(GW_M_EV_COMMITTED));
out:
    if (!m.stopping && m.rt) { /* a start-up failure after threads began */
        gw_runtime_join(m.rt);
    }
    gw_north_stop(m.north);
    gw_store_close(m.store);
    gw_north_free(m.north);
    gw_reload_free(m.reload);
    gw_runtime_free(m.rt);
    if (m.api && !m.stopping)
        gw_api_server_stop(m.api);
    if (!m.stopping)
        gw_api_hub_stop(m.hub);
    gw_commands_detach(m.commands); /* a start-up failure: attached, never detached */
    uv_run(&m.loop, UV_RUN_NOWAIT);
    gw_commands_free(m.commands);
    gw_api_server_free(m.api);
    gw_api_hub_free(m.hub);
    gw_store_reader_close(m.api_ctx.reader);
    uv_loop_close(&m.loop);
    gw_diag_free(&diag);
    gw_config_release(m.cfg); /* the last generation's references went with the loops and store */
    return rc;
}
