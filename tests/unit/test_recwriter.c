/* test_recwriter: the call-record writer's queue. One call's writes land
 * in the order they were put (a write put while the previous one waits
 * replaces it, so the latest state lands); the slots bound the queue and a
 * full writer refuses a new call; a write the database could not take is
 * tried again until it lands, or given up after its deadline (a dropped
 * create is made by the call's next write); stopping drains the queue.
 * The writes go to a fake store that can hold the writer (a stalled
 * database) and fail on demand. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "call/recwriter.h"
#include "core/clock.h"

#define MAX_LOG 64

struct written {
    char call_uuid[CALL_UUID_LEN + 1];
    char status[CALL_STATUS_MAX + 1];
    bool create;
    enum err result;
};

struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool held;     /* the writer waits in write until released */
    bool in_write; /* the writer is inside write */
    int fail;      /* the next writes fail with ERR_UNAVAILABLE... */
    enum err then; /* ...then this one is returned once (ERR_OK: none) */
    struct written log[MAX_LOG];
    int n;
};

static struct fake F;

static enum err fake_write(void *ctx, const struct store_call *rec, bool create)
{
    struct fake *f = ctx;
    enum err e = ERR_OK;

    pthread_mutex_lock(&f->mu);
    f->in_write = true;
    pthread_cond_broadcast(&f->cv);
    while (f->held)
        pthread_cond_wait(&f->cv, &f->mu);
    if (f->fail > 0) {
        f->fail--;
        e = ERR_UNAVAILABLE;
    } else if (f->then != ERR_OK) {
        e = f->then;
        f->then = ERR_OK;
    }
    if (f->n < MAX_LOG) {
        snprintf(f->log[f->n].call_uuid, sizeof(f->log[f->n].call_uuid), "%s", rec->call_uuid);
        snprintf(f->log[f->n].status, sizeof(f->log[f->n].status), "%s", rec->status);
        f->log[f->n].create = create;
        f->log[f->n].result = e;
        f->n++;
    }
    f->in_write = false;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return e;
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof(F));
    pthread_mutex_init(&F.mu, NULL);
    pthread_cond_init(&F.cv, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pthread_cond_destroy(&F.cv);
    pthread_mutex_destroy(&F.mu);
    return 0;
}

static struct recw *start(unsigned slots, int give_up_ms)
{
    struct recw_config cfg = {.slots = slots,
                              .write = fake_write,
                              .ctx = &F,
                              .backoff_min_ms = 5,
                              .backoff_max_ms = 20,
                              .give_up_ms = give_up_ms};
    struct recw *w = NULL;

    assert_int_equal(recw_start(&cfg, &w), ERR_OK);
    return w;
}

static void hold(bool on)
{
    pthread_mutex_lock(&F.mu);
    F.held = on;
    pthread_cond_broadcast(&F.cv);
    pthread_mutex_unlock(&F.mu);
}

/* Waits (5 s at most) until the writer sits inside a held write. */
static void wait_in_write(void)
{
    int64_t end = clock_mono_ms() + 5000;

    pthread_mutex_lock(&F.mu);
    while (!F.in_write && clock_mono_ms() < end) {
        pthread_mutex_unlock(&F.mu);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        pthread_mutex_lock(&F.mu);
    }
    assert_true(F.in_write);
    pthread_mutex_unlock(&F.mu);
}

static void wait_idle(struct recw *w)
{
    int64_t end = clock_mono_ms() + 5000;

    while (recw_backlog(w) != 0 && clock_mono_ms() < end)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    assert_int_equal(recw_backlog(w), 0);
}

static struct store_call call(const char *uuid, const char *status)
{
    struct store_call c = {0};

    snprintf(c.call_uuid, sizeof(c.call_uuid), "%s", uuid);
    snprintf(c.status, sizeof(c.status), "%s", status);
    return c;
}

static void put(struct recw *w, struct recw_slot *s, const char *uuid, const char *status,
                bool create)
{
    struct store_call c = call(uuid, status);

    recw_put(w, s, &c, create);
}

static void expect(int i, const char *uuid, const char *status, bool create)
{
    assert_true(i < F.n);
    assert_string_equal(F.log[i].call_uuid, uuid);
    assert_string_equal(F.log[i].status, status);
    assert_int_equal(F.log[i].create, create);
}

/* A free writer: every write lands, each call's in order. */
static void test_in_order(void **state)
{
    struct recw *w = start(4, 0);
    struct recw_slot *a = recw_reserve(w), *b = recw_reserve(w);
    int i, ia = 0, ib = 0;
    static const char *seq[] = {"RINGING", "IN_PROGRESS", "COMPLETED"};

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    for (i = 0; i < 3; i++) {
        put(w, a, "a", seq[i], i == 0);
        put(w, b, "b", seq[i], i == 0);
        wait_idle(w); /* so that no write replaces another here */
    }
    recw_release(w, a);
    recw_release(w, b);
    assert_int_equal(F.n, 6);
    for (i = 0; i < F.n; i++) {
        if (strcmp(F.log[i].call_uuid, "a") == 0) {
            expect(i, "a", seq[ia], ia == 0);
            ia++;
        } else {
            expect(i, "b", seq[ib], ib == 0);
            ib++;
        }
    }
    recw_stop(w, 1000);
}

/* While the database stalls, a call's later writes replace the one that
 * waits; the latest lands after the one in progress, and a create stays a
 * create. Calls are written in the order they were first put. */
static void test_stall_coalesces_in_order(void **state)
{
    struct recw *w = start(4, 0);
    struct recw_slot *a = recw_reserve(w), *b = recw_reserve(w);

    (void)state;
    hold(true);
    put(w, a, "a", "RINGING", true);
    wait_in_write();
    put(w, a, "a", "IN_PROGRESS", false);
    put(w, b, "b", "RINGING", true);
    put(w, a, "a", "COMPLETED", false);
    put(w, b, "b", "IN_PROGRESS", false);
    assert_int_equal(recw_backlog(w), 3); /* a in progress, a and b queued once each */
    hold(false);
    wait_idle(w);
    assert_int_equal(F.n, 3);
    expect(0, "a", "RINGING", true);
    expect(1, "a", "COMPLETED", false);
    expect(2, "b", "IN_PROGRESS", true);
    recw_release(w, a);
    recw_release(w, b);
    recw_stop(w, 1000);
}

/* The slots bound the writer: the next call is refused until an ended
 * call's last write has been taken. */
static void test_full_refuses_new_calls(void **state)
{
    struct recw *w = start(2, 0);
    struct recw_slot *a, *b, *c;

    (void)state;
    hold(true);
    a = recw_reserve(w);
    b = recw_reserve(w);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(recw_reserve(w));
    put(w, a, "a", "RINGING", true);
    wait_in_write();
    put(w, a, "a", "COMPLETED", false);
    recw_release(w, a); /* ended, but its final record still waits */
    assert_null(recw_reserve(w));
    /* The live call's writes still fit. */
    put(w, b, "b", "RINGING", true);
    put(w, b, "b", "IN_PROGRESS", false);
    hold(false);
    wait_idle(w);
    c = recw_reserve(w);
    assert_non_null(c);
    expect(0, "a", "RINGING", true);
    expect(1, "a", "COMPLETED", false);
    expect(2, "b", "IN_PROGRESS", true);
    recw_release(w, b);
    recw_release(w, c);
    recw_stop(w, 1000);
}

/* A write the database could not take is tried again until it lands; a
 * create whose earlier attempt got no answer and that then meets a
 * conflict has landed. */
static void test_unavailable_is_retried(void **state)
{
    struct recw *w = start(2, 5000);
    struct recw_slot *a = recw_reserve(w);

    (void)state;
    F.fail = 3;
    F.then = ERR_CONFLICT;
    put(w, a, "a", "RINGING", true);
    wait_idle(w);
    assert_int_equal(F.n, 4);
    assert_int_equal(F.log[3].result, ERR_CONFLICT);
    put(w, a, "a", "COMPLETED", false);
    wait_idle(w);
    expect(4, "a", "COMPLETED", false); /* the create counted as landed */
    recw_release(w, a);
    recw_stop(w, 1000);
}

/* Past its deadline a write is dropped; a dropped create is made by the
 * call's next write. */
static void test_given_up_create_made_by_next_write(void **state)
{
    struct recw *w = start(2, 50);
    struct recw_slot *a = recw_reserve(w);
    int n;

    (void)state;
    F.fail = 1000;
    put(w, a, "a", "RINGING", true);
    wait_idle(w);
    n = F.n;
    assert_true(n >= 2);
    pthread_mutex_lock(&F.mu);
    F.fail = 0;
    pthread_mutex_unlock(&F.mu);
    put(w, a, "a", "COMPLETED", false);
    wait_idle(w);
    assert_int_equal(F.n, n + 1);
    expect(n, "a", "COMPLETED", true);
    recw_release(w, a);
    recw_stop(w, 1000);
}

/* Stopping writes what is queued first. */
static void test_stop_drains(void **state)
{
    struct recw *w = start(8, 0);
    struct recw_slot *s[5];
    char id[8];
    int i;

    (void)state;
    hold(true);
    for (i = 0; i < 5; i++) {
        s[i] = recw_reserve(w);
        assert_non_null(s[i]);
        snprintf(id, sizeof(id), "c%d", i);
        put(w, s[i], id, "COMPLETED", true);
        recw_release(w, s[i]);
    }
    wait_in_write();
    hold(false);
    recw_stop(w, 2000);
    assert_int_equal(F.n, 5);
    for (i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        expect(i, id, "COMPLETED", true);
    }
}

/* What the landed callback saw. */
static struct {
    int calls;
    void *arg;
    int written; /* writes logged by the fake store when it was called */
    char status[CALL_STATUS_MAX + 1];
} L;

static void on_landed(void *ctx, void *arg)
{
    (void)ctx;
    pthread_mutex_lock(&F.mu);
    L.calls++;
    L.arg = arg;
    L.written = F.n;
    if (F.n > 0)
        snprintf(L.status, sizeof(L.status), "%s", F.log[F.n - 1].status);
    pthread_mutex_unlock(&F.mu);
}

static struct recw *start_landed(int give_up_ms)
{
    struct recw_config cfg = {.slots = 4,
                              .write = fake_write,
                              .ctx = &F,
                              .backoff_min_ms = 5,
                              .backoff_max_ms = 20,
                              .give_up_ms = give_up_ms,
                              .landed = on_landed,
                              .landed_ctx = &F};
    struct recw *w = NULL;

    memset(&L, 0, sizeof(L));
    assert_int_equal(recw_start(&cfg, &w), ERR_OK);
    return w;
}

/* A write put with recw_put_then is followed by its callback only once it
 * has been written; a later write that replaces it before it is taken
 * carries the callback, which then follows that write. */
static void test_landed_after_write(void **state)
{
    struct recw *w = start_landed(0);
    struct recw_slot *a = recw_reserve(w);
    struct store_call c = call("a", "COMPLETED");
    int tag;

    (void)state;
    hold(true);
    put(w, a, "a", "RINGING", true);
    wait_in_write();
    recw_put_then(w, a, &c, false, &tag);
    put(w, a, "a", "COMPLETED", false);
    pthread_mutex_lock(&F.mu);
    assert_int_equal(L.calls, 0); /* nothing written yet but the create */
    pthread_mutex_unlock(&F.mu);
    hold(false);
    wait_idle(w);
    recw_release(w, a);
    recw_stop(w, 1000);
    assert_int_equal(F.n, 2);
    assert_int_equal(L.calls, 1);
    assert_ptr_equal(L.arg, &tag);
    assert_int_equal(L.written, 2);
    assert_string_equal(L.status, "COMPLETED");
}

/* A write given up still calls back: a webhook waiting for it is sent. */
static void test_landed_after_give_up(void **state)
{
    struct recw *w = start_landed(50);
    struct recw_slot *a = recw_reserve(w);
    struct store_call c = call("a", "COMPLETED");
    int tag;

    (void)state;
    F.fail = 1000;
    recw_put_then(w, a, &c, true, &tag);
    wait_idle(w);
    recw_release(w, a);
    recw_stop(w, 0);
    assert_int_equal(L.calls, 1);
    assert_ptr_equal(L.arg, &tag);
    assert_true(F.n >= 2);
    assert_int_equal(F.log[F.n - 1].result, ERR_UNAVAILABLE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stall_coalesces_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_refuses_new_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unavailable_is_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_given_up_create_made_by_next_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_landed_after_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_landed_after_give_up, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
