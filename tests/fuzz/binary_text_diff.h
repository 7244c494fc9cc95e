/* binary_text_diff.h: the differential check of the binary codec's report-as-text decode (a
 * report going to the dispatcher, hint.check: its payload text written as the fields are read,
 * no jansson tree) against the general path (values tree, then gw_tm_report_as_is and
 * gw_json_write, the dispatcher's way): the same outcome, the same refusal, the same message and
 * the same payload text. Shared by fuzz_binary_frame.c and the unit test binary_codec.c. */
#ifndef GW_TEST_BINARY_TEXT_DIFF_H
#define GW_TEST_BINARY_TEXT_DIFF_H

#include <stdio.h>
#include <string.h>

#include "codecs/binary/codec_binary.h"
#include "gateway/core/thing_model.h"
#include "gateway/util/alloc.h"
#include "gateway/util/json_write.h"

/* What went wrong; "" when the two agree. */
static char binary_text_diff_why[640];

/* 1: decoded as text and both paths agree; 0: not as text (a refusal, or the general path's
 * values), both paths agree; -1: they disagree (binary_text_diff_why says how). */
static int binary_text_diff(const gw_product *p, const uint8_t *data, size_t size)
{
    static const gw_decode_hint check = {GW_MSG_NONE, NULL, true};
    gw_thing_msg fast, slow;
    gw_reject frej = {GW_R_NONE, ""}, srej = {GW_R_NONE, ""};
    char *text = NULL;
    int res = -1;
    binary_text_diff_why[0] = 0;
    int frc = gw_codec_binary_ops.decode(p, &check, data, size, &fast, &frej);
    int src = gw_codec_binary_ops.decode(p, NULL, data, size, &slow, &srej);
    if (frc != src || frej.reason != srej.reason || strcmp(frej.detail, srej.detail) != 0) {
        snprintf(binary_text_diff_why, sizeof(binary_text_diff_why),
                 "outcome %d/%d reason %d/%d detail %.200s / %.200s", frc, src, (int)frej.reason,
                 (int)srej.reason, frej.detail, srej.detail);
        goto out;
    }
    if (fast.kind != slow.kind || strcmp(fast.msg_id, slow.msg_id) != 0 ||
        fast.timestamp_ms != slow.timestamp_ms || strcmp(fast.name, slow.name) != 0 ||
        strcmp(fast.device_id, slow.device_id) != 0 || strcmp(fast.secret, slow.secret) != 0 ||
        fast.seq != slow.seq || fast.seq_set != slow.seq_set || fast.type_code != slow.type_code ||
        fast.auth_state != slow.auth_state || fast.success != slow.success ||
        strcmp(fast.error, slow.error) != 0) {
        snprintf(binary_text_diff_why, sizeof(binary_text_diff_why),
                 "message: kind %d/%d msg_id %s/%s ts %lld/%lld seq %u/%u", fast.kind, slow.kind,
                 fast.msg_id, slow.msg_id, (long long)fast.timestamp_ms,
                 (long long)slow.timestamp_ms, fast.seq, slow.seq);
        goto out;
    }
    if (!fast.norm_text) {
        if (!json_equal(fast.values, slow.values) && (fast.values || slow.values)) {
            snprintf(binary_text_diff_why, sizeof(binary_text_diff_why), "values differ");
            goto out;
        }
        res = 0;
        goto out;
    }
    if (fast.values || slow.kind != GW_MSG_PROPERTY_REPORT || !gw_tm_report_as_is(p, slow.values)) {
        snprintf(binary_text_diff_why, sizeof(binary_text_diff_why),
                 "text %.200s for a report the dispatcher would check (or values beside it)",
                 fast.norm_text);
        goto out;
    }
    text = gw_json_write(slow.values);
    if (!text || strcmp(text, fast.norm_text) != 0) {
        snprintf(binary_text_diff_why, sizeof(binary_text_diff_why), "payload %.200s vs %.200s",
                 fast.norm_text, text ? text : "(null)");
        goto out;
    }
    res = 1;
out:
    gw_free(GW_AREA_EVENT, text);
    gw_thing_msg_clear(&fast);
    gw_thing_msg_clear(&slow);
    return res;
}

#endif
