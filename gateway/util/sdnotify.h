/* sdnotify.h: systemd's readiness notification (sd_notify(3)'s datagram protocol, without
 * libsystemd): READY=1 once serving, RELOADING=1 / READY=1 around a reload, STOPPING=1. */
#ifndef GW_SDNOTIFY_H
#define GW_SDNOTIFY_H

/* Sends state ("READY=1", "STOPPING=1", ...) to $NOTIFY_SOCKET as one datagram: a path, or an
 * abstract socket name when it starts with '@'. Never blocks (MSG_DONTWAIT). 0 when sent, 1 when
 * NOTIFY_SOCKET is unset or empty (not under systemd: nothing to do), a negative errno when the
 * socket is unusable (too long a name, nobody listening, queue full). */
int gw_sd_notify(const char *state);

/* "RELOADING=1" with the MONOTONIC_USEC=... field systemd 253+ asks of a reload notification. */
int gw_sd_notify_reloading(void);

#endif
