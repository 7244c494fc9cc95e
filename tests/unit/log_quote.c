/* log_quote.c: the log's quoting (quotes, control bytes, U+2028/U+2029, C1 controls and bytes that
 * are not UTF-8 escaped; truncation never splits an escape) and its per-call-site rate limit
 * (N lines per window, the rest counted and reported as suppressed=N). */
#include <fcntl.h>
#include <unistd.h>

#include "gateway/util/log.h"
#include "gateway/util/metrics.h"
#include "test.h"

static void q(const char *in, const char *want)
{
    char buf[256];
    CHECK_STR(gw_log_quote(buf, sizeof(buf), in), want);
}

static void quoting(void)
{
    char buf[64];
    q("plain", "\"plain\"");
    q("a\"b\\c", "\"a\\\"b\\\\c\"");
    q("l1\nl2\r\t\x7f", "\"l1\\x0al2\\x0d\\x09\\x7f\"");
    q("x\xe2\x80\xa8y\xe2\x80\xa9z", "\"x\\u2028y\\u2029z\"");             /* U+2028, U+2029 */
    q("nel\xc2\x85!\xc2\x9f", "\"nel\\u0085!\\u009f\"");                   /* C1 controls */
    q("caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\""); /* valid UTF-8 kept */
    q("\xff", "\"\\xff\"");                                                /* never a UTF-8 byte */
    q("a\xe2\x80", "\"a\\xe2\\x80\"");                                     /* truncated sequence */
    q("\xc0\xaf", "\"\\xc0\\xaf\"");                                       /* overlong '/' */
    q("\xed\xa0\x80", "\"\\xed\\xa0\\x80\"");                              /* a surrogate */
    q("\xf4\x90\x80\x80", "\"\\xf4\\x90\\x80\\x80\"");                     /* past U+10FFFF */
    q("\x80x", "\"\\x80x\"");                                              /* stray continuation */
    q("", "\"\"");
    /* truncation keeps whole escapes and the closing quote */
    CHECK_STR(gw_log_quote(buf, 8, "\n\n\n"), "\"\\x0a\"");
    CHECK_STR(gw_log_quote(buf, 9, "ab\xe2\x80\xa8"), "\"ab\"");
    CHECK_STR(gw_log_quote(buf, 11, "ab\xe2\x80\xa8"), "\"ab\\u2028\"");
    CHECK_STR(gw_log_quote(buf, 6, "\xc3\xa9\xc3\xa9"), "\"\xc3\xa9\"");
    /* gw_log_value: plain tokens stay bare */
    CHECK_STR(gw_log_value(buf, sizeof(buf), "t-001"), "t-001");
    CHECK_STR(gw_log_value(buf, sizeof(buf), ""), "\"\"");
    CHECK_STR(gw_log_value(buf, sizeof(buf), "a b"), "\"a b\"");
    CHECK_STR(gw_log_value(buf, sizeof(buf), "k=v"), "\"k=v\"");
    CHECK_STR(gw_log_value(buf, sizeof(buf), "x\xe2\x80\xa8"), "\"x\\u2028\"");
}

/* ---- the rate limit: stderr captured in a file ---- */

static int saved_err = -1;
static char cap_path[] = "/tmp/gw-log-test-XXXXXX";
static int cap_fd = -1;

static void capture(void)
{
    cap_fd = mkstemp(cap_path);
    saved_err = dup(STDERR_FILENO);
    dup2(cap_fd, STDERR_FILENO);
}

static char *captured(void)
{
    static char text[65536];
    ssize_t n = pread(cap_fd, text, sizeof(text) - 1, 0);
    text[n > 0 ? n : 0] = 0;
    return text;
}

static void release(void)
{
    fputs(captured(), stdout); /* what was logged, and any CHECK failure printed meanwhile */
    dup2(saved_err, STDERR_FILENO);
    close(saved_err);
    close(cap_fd);
    unlink(cap_path);
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void site_a(int i)
{
    GW_LOG_WARN("t", "d-1", "127.0.0.1:1", "site a", "i=%d", i);
}

static void site_b(int i)
{
    GW_LOG_WARN("t", NULL, NULL, "site b", "i=%d", i);
}

static void rate_limit(void)
{
    gw_log_rate_limit = 10;
    gw_log_limit_thread(1);
    int64_t before = gw_metric_get(GW_M_LOG_SUPPRESSED);
    capture();
    for (int i = 0; i < 25; i++)
        site_a(i);
    for (int i = 0; i < 3; i++)
        site_b(i);
    char *t = captured();
    CHECK_INT(count(t, "msg=\"site a\""), 10);
    CHECK_INT(count(t, "msg=\"site b\""), 3); /* another call site keeps its own budget */
    CHECK_INT(gw_metric_get(GW_M_LOG_SUPPRESSED) - before, 15);
    CHECK_INT(count(t, "suppressed="), 0);
    usleep((GW_LOG_RATE_WINDOW_MS + 50) * 1000);
    site_a(100); /* the next window's first line carries the count */
    t = captured();
    CHECK_CONTAINS(t, "msg=\"site a\" suppressed=15 i=100\n");
    /* a call site that goes silent: its summary comes from gw_log_tick once the window ends */
    for (int i = 0; i < 30; i++)
        site_b(i);
    gw_log_tick();
    CHECK_INT(count(captured(), "log lines suppressed"), 0); /* its window is still open */
    usleep((GW_LOG_RATE_WINDOW_MS + 50) * 1000);
    gw_log_tick();
    t = captured();
    CHECK_CONTAINS(t, "level=warn area=t msg=\"log lines suppressed\" of=\"site b\" suppressed=20");
    CHECK_INT(count(t, "log lines suppressed"), 1);
    gw_log_tick(); /* reported once */
    CHECK_INT(count(captured(), "log lines suppressed"), 1);
    /* the main thread's lines (limit off) are all written */
    gw_log_limit_thread(0);
    for (int i = 0; i < 40; i++)
        site_a(i);
    CHECK_INT(count(captured(), "msg=\"site a\""), 51);
    release();
}

int main(void)
{
    quoting();
    rate_limit();
    TEST_MAIN_END();
}
