/* json_read_diff.h: the differential check of the JSON codec's in-place reader
 * (codecs/json/json_read.c) against the general path (jansson decode, then gw_tm_check_*): what
 * the reader takes, the general path must accept with the same message and the same normalised
 * payload. Shared by fuzz_json_read.c and the unit test json_read.c. */
#ifndef GW_TEST_JSON_READ_DIFF_H
#define GW_TEST_JSON_READ_DIFF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codecs/json/codec_json.h"
#include "codecs/json/json_read.h"
#include "gateway/core/thing_model.h"
#include "gateway/util/json_write.h"

/* What went wrong, for the unit test; "" when the two agree. */
static char json_read_diff_why[640];

/* 1: the reader took the message and both paths agree; 0: the reader did not take it (the general
 * path decides alone); -1: they disagree (json_read_diff_why says how). */
static int json_read_diff(const gw_product *p, gw_msg_kind kind, const char *name,
                          const uint8_t *data, size_t size)
{
    gw_decode_hint hint = {kind, name, false};
    gw_thing_msg fast, slow;
    gw_reject rej;
    json_t *norm = NULL;
    char *text = NULL;
    int res = -1;
    json_read_diff_why[0] = 0;
    memset(&rej, 0, sizeof(rej));
    int frc = gw__json_read(p, &hint, data, size, &fast);
    if (frc == 1) {
        if (fast.values || fast.norm_text || fast.msg_id[0]) {
            snprintf(json_read_diff_why, sizeof(json_read_diff_why), "not taken but out not clear");
            return -1;
        }
        return 0;
    }
    if (frc != 0) {
        snprintf(json_read_diff_why, sizeof(json_read_diff_why), "reader returned %d", frc);
        return -1;
    }
    int rc = gw_codec_json_ops.decode(p, &hint, data, size, &slow, &rej);
    if (rc == 0)
        rc = kind == GW_MSG_PROPERTY_REPORT
                 ? gw_tm_check_report(p, slow.values, &norm, &rej)
                 : gw_tm_check_event(p, slow.name, slow.values, &norm, &rej);
    if (rc != 0) {
        snprintf(json_read_diff_why, sizeof(json_read_diff_why),
                 "reader took what the general path refuses: %.200s", rej.detail);
        goto out;
    }
    text = gw_json_write(norm);
    if (!text || !fast.norm_text || strcmp(text, fast.norm_text) != 0) {
        snprintf(json_read_diff_why, sizeof(json_read_diff_why), "payload %.200s vs %.200s",
                 fast.norm_text ? fast.norm_text : "(null)", text ? text : "(null)");
        goto out;
    }
    if (fast.kind != slow.kind || strcmp(fast.msg_id, slow.msg_id) != 0 ||
        fast.timestamp_ms != slow.timestamp_ms || strcmp(fast.name, slow.name) != 0) {
        snprintf(json_read_diff_why, sizeof(json_read_diff_why),
                 "envelope: kind %d/%d msg_id %s/%s ts %lld/%lld name %s/%s", fast.kind, slow.kind,
                 fast.msg_id, slow.msg_id, (long long)fast.timestamp_ms,
                 (long long)slow.timestamp_ms, fast.name, slow.name);
        goto out;
    }
    if (fast.values) {
        snprintf(json_read_diff_why, sizeof(json_read_diff_why), "values beside the payload");
        goto out;
    }
    res = 1;
out:
    gw_free(GW_AREA_EVENT, text);
    json_decref(norm);
    gw_thing_msg_clear(&fast);
    gw_thing_msg_clear(&slow);
    return res;
}

#endif
