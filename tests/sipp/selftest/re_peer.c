/* re_peer: a minimal SIP user agent on libre (the SIP stack of sfvopi's call engine), used
 * only by test_libre_interop.py to check that the carrier scenarios of tests/sipp work against
 * libre, not just against SIPp itself.
 *
 *   re_peer PORT MODE MS [DEST_URI]
 *   uas-answer       answer every INVITE (180, then 200 with SDP) and keep the call
 *   uas-bye MS       the same, then hang up (BYE) MS ms after the answer
 *   uas-reject CODE  refuse every INVITE with CODE
 *   uac              call DEST_URI; report progress and the final response
 *   uac-bye MS       call, then hang up MS ms after the answer
 *   uac-cancel MS    call, then give up (CANCEL) MS ms after sending the INVITE
 * Prints one "peer: ..." line per event on stdout. */
#include <re.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct sip *sip;
static struct sipsess_sock *sock;
static struct sipsess *sess;
static struct tmr tmr;
static const char *mode;
static int after_ms;

static struct mbuf *sdp(void) {
    struct mbuf *mb = mbuf_alloc(256);
    mbuf_printf(mb, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                    "m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
                    "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n");
    mb->pos = 0;
    return mb;
}
static int offer_h(struct mbuf **descp, const struct sip_msg *msg, void *arg) {
    (void)msg; (void)arg; *descp = sdp(); return 0;
}
static int answer_h(const struct sip_msg *msg, void *arg) { (void)msg; (void)arg; return 0; }
static void hang(void *arg) {
    (void)arg;
    printf("peer: hanging up (%s)\n", mode); fflush(stdout);
    sess = mem_deref(sess);
    tmr_start(&tmr, 1500, (tmr_h *)re_cancel, NULL);
}
static void progr_h(const struct sip_msg *msg, void *arg) {
    (void)arg; printf("peer: progress %u\n", msg->scode); fflush(stdout);
}
static void estab_h(const struct sip_msg *msg, void *arg) {
    (void)msg; (void)arg; printf("peer: established\n"); fflush(stdout);
    if (!strcmp(mode, "uas-bye") || !strcmp(mode, "uac-bye")) tmr_start(&tmr, after_ms, hang, NULL);
}
static void close_h(int err, const struct sip_msg *msg, void *arg) {
    (void)arg;
    printf("peer: closed err=%d scode=%u\n", err, msg ? msg->scode : 0);
    if (msg) {
        const struct sip_hdr *h = sip_msg_xhdr(msg, "Reason");
        if (h) printf("peer: reason %.*s\n", (int)h->val.l, h->val.p);
    }
    fflush(stdout);
    sess = mem_deref(sess);
    tmr_start(&tmr, 1000, (tmr_h *)re_cancel, NULL);
}
static void conn_h(const struct sip_msg *msg, void *arg) {
    (void)arg;
    printf("peer: INVITE to %.*s\n", (int)msg->uri.user.l, msg->uri.user.p); fflush(stdout);
    if (!strcmp(mode, "uas-reject")) { sip_treply(NULL, sip, msg, (uint16_t)after_ms, "Refused"); return; }
    struct mbuf *mb = sdp();
    int err = sipsess_accept(&sess, sock, msg, 180, "Ringing", "peer", "application/sdp", NULL,
                             NULL, NULL, false, offer_h, answer_h, estab_h, NULL, NULL, close_h,
                             NULL, NULL);
    if (!err) err = sipsess_answer(sess, 200, "OK", mb, NULL);
    mem_deref(mb);
    if (err) printf("peer: accept err %d\n", err);
}
int main(int argc, char **argv) {
    /* re_peer PORT MODE MS [DEST_URI] */
    if (argc < 4) return 2;
    mode = argv[2]; after_ms = atoi(argv[3]);
    libre_init();
    struct sa laddr; sa_set_str(&laddr, "127.0.0.1", (uint16_t)atoi(argv[1]));
    if (sip_alloc(&sip, NULL, 32, 32, 32, "re-peer", NULL, NULL)) return 1;
    if (sip_transp_add(sip, SIP_TRANSP_UDP, &laddr)) return 1;
    if (sipsess_listen(&sock, sip, 32, conn_h, NULL)) return 1;
    if (!strncmp(mode, "uac", 3)) {
        struct mbuf *mb = sdp();
        int err = sipsess_connect(&sess, sock, argv[4], NULL, "sip:+918000010000@127.0.0.1", "peer",
                                  NULL, 0, "application/sdp", mb, NULL, NULL, false, offer_h,
                                  answer_h, progr_h, estab_h, NULL, NULL, close_h, NULL, NULL);
        mem_deref(mb);
        if (err) { printf("connect err %d\n", err); return 1; }
        if (!strcmp(mode, "uac-cancel")) tmr_start(&tmr, after_ms, hang, NULL);
    }
    re_main(NULL);
    sipsess_close_all(sock);
    mem_deref(sock); sip_close(sip, true); mem_deref(sip);
    libre_close();
    return 0;
}
