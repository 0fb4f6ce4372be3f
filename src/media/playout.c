/* playout: a growable ring of bytes, capped, and a ring of checkpoints
 * keyed by absolute stream offset (pushed/played count every byte ever
 * queued), so "all audio before the mark has been sent" is one compare. */
#include "media/playout.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define PLAYOUT_MIN_ALLOC 4096

void playout_init(struct playout *q, size_t max_bytes, uint8_t silence)
{
    assert(max_bytes > 0);
    memset(q, 0, sizeof(*q));
    q->max = max_bytes;
    q->silence = silence;
}

void playout_release(struct playout *q)
{
    free(q->buf);
    q->buf = NULL;
    q->cap = q->head = q->len = 0;
    q->nmarks = q->mark_head = 0;
}

/* Grows the ring to hold need bytes (need <= max), unwrapping it. Doubles
 * so a stream of small pushes costs amortised O(1) per byte. */
static enum err grow(struct playout *q, size_t need)
{
    size_t ncap = q->cap ? q->cap : PLAYOUT_MIN_ALLOC;
    uint8_t *nbuf;
    size_t first;

    while (ncap < need)
        ncap = ncap > q->max / 2 ? q->max : ncap * 2;
    if (ncap > q->max)
        ncap = q->max;
    nbuf = malloc(ncap);
    if (!nbuf)
        return ERR_NOMEM;
    first = q->cap - q->head < q->len ? q->cap - q->head : q->len;
    if (q->len) {
        memcpy(nbuf, q->buf + q->head, first);
        memcpy(nbuf + first, q->buf, q->len - first);
    }
    free(q->buf);
    q->buf = nbuf;
    q->cap = ncap;
    q->head = 0;
    return ERR_OK;
}

enum err playout_push(struct playout *q, const uint8_t *audio, size_t n)
{
    size_t tail, first;
    enum err e;

    if (n == 0)
        return ERR_OK;
    if (n > q->max - q->len)
        return ERR_TOO_LARGE;
    if (q->len + n > q->cap) {
        e = grow(q, q->len + n);
        if (e != ERR_OK)
            return e;
    }
    tail = (q->head + q->len) % q->cap;
    first = q->cap - tail < n ? q->cap - tail : n;
    memcpy(q->buf + tail, audio, first);
    memcpy(q->buf, audio + first, n - first);
    q->len += n;
    q->pushed += n;
    return ERR_OK;
}

enum err playout_checkpoint(struct playout *q, const char *name)
{
    size_t len = strnlen(name, PLAYOUT_NAME_MAX + 1);
    struct playout_mark *m;

    if (len == 0)
        return ERR_INVALID;
    if (len > PLAYOUT_NAME_MAX || q->nmarks == PLAYOUT_MAX_CHECKPOINTS)
        return ERR_TOO_LARGE;
    m = &q->marks[(q->mark_head + q->nmarks) % PLAYOUT_MAX_CHECKPOINTS];
    memcpy(m->name, name, len);
    m->name[len] = '\0';
    m->at = q->pushed;
    q->nmarks++;
    return ERR_OK;
}

size_t playout_frame(struct playout *q, uint8_t *out, size_t frame_bytes, const char **done,
                     int *ndone)
{
    return playout_frame_until(q, out, frame_bytes, UINT64_MAX, done, NULL, ndone);
}

size_t playout_frame_until(struct playout *q, uint8_t *out, size_t frame_bytes, uint64_t until,
                           const char **done, uint64_t *done_at, int *ndone)
{
    size_t take = q->len < frame_bytes ? q->len : frame_bytes;
    size_t first;

    assert(frame_bytes > 0);
    if (until < q->played)
        take = 0;
    else if (until - q->played < take)
        take = (size_t)(until - q->played);
    if (take) {
        first = q->cap - q->head < take ? q->cap - q->head : take;
        memcpy(out, q->buf + q->head, first);
        memcpy(out + first, q->buf, take - first);
        q->head = (q->head + take) % q->cap;
        q->len -= take;
        q->played += take;
    }
    memset(out + take, q->silence, frame_bytes - take);
    *ndone = 0;
    while (q->nmarks && q->marks[q->mark_head].at <= q->played) {
        if (done_at)
            done_at[*ndone] = q->marks[q->mark_head].at;
        done[(*ndone)++] = q->marks[q->mark_head].name;
        q->mark_head = (q->mark_head + 1) % PLAYOUT_MAX_CHECKPOINTS;
        q->nmarks--;
    }
    return take;
}

void playout_clear(struct playout *q, const char **dropped, uint64_t *dropped_at, int *ndropped)
{
    q->played += q->len;
    q->head = 0;
    q->len = 0;
    *ndropped = 0;
    while (q->nmarks) {
        if (dropped_at)
            dropped_at[*ndropped] = q->marks[q->mark_head].at;
        dropped[(*ndropped)++] = q->marks[q->mark_head].name;
        q->mark_head = (q->mark_head + 1) % PLAYOUT_MAX_CHECKPOINTS;
        q->nmarks--;
    }
}

uint64_t playout_pushed(const struct playout *q)
{
    return q->pushed;
}

uint64_t playout_played(const struct playout *q)
{
    return q->played;
}

size_t playout_queued(const struct playout *q)
{
    return q->len;
}

size_t playout_pending(const struct playout *q)
{
    return q->nmarks;
}

void dtmf_dedup_init(struct dtmf_dedup *d)
{
    memset(d, 0, sizeof(*d));
}

bool dtmf_dedup_feed(struct dtmf_dedup *d, uint32_t rtp_timestamp, uint8_t event, bool end,
                     char *digit)
{
    static const char keys[16] = {'0', '1', '2', '3', '4', '5', '6', '7',
                                  '8', '9', '*', '#', 'A', 'B', 'C', 'D'};

    if (event > 15 || !end)
        return false;
    if (d->have && d->ts == rtp_timestamp && d->event == event)
        return false; /* a retransmitted end packet */
    d->have = true;
    d->ts = rtp_timestamp;
    d->event = event;
    *digit = keys[event];
    return true;
}
