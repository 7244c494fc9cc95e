/* command_fallback.c: TEMPORARY weak stand-ins for the command table (gateway/command.c, in
 * progress) so the north bridge links and forwards meanwhile. Deleted when command.c lands. */
#include "../command.h"

__attribute__((weak)) int gw_commands_create(gw_commands **out, gw_runtime *rt,
                                             gw_store_reader *reader, gw_error *err)
{
    (void)rt;
    (void)reader;
    (void)err;
    *out = NULL;
    return 0;
}

__attribute__((weak)) void gw_commands_free(gw_commands *c)
{
    (void)c;
}

__attribute__((weak)) void gw_commands_on_cloud(gw_commands *c, gw_command_op op,
                                                const char *product, const char *device,
                                                const void *payload, size_t len)
{
    (void)c, (void)op, (void)product, (void)device, (void)payload, (void)len;
}

__attribute__((weak)) void gw_commands_tick(gw_commands *c, int64_t now_ms)
{
    (void)c, (void)now_ms;
}
