/* codec.c: what every codec shares: releasing a decoded thing message. */
#include "codec.h"

#include <string.h>

void gw_thing_msg_clear(gw_thing_msg *m)
{
    if (!m)
        return;
    json_decref(m->values);
    json_decref(m->records);
    memset(m, 0, sizeof(*m));
}
