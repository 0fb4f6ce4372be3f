/* test_sip: the pure parts of the SIP module: the Q.850 cause of a Reason
 * header, which decides the hangup_cause a carrier's BYE, CANCEL or error
 * response reports; and the loop's timers and queue on a real libre loop. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "sip/sip.h"

static int cause(const char *s)
{
    return sip_reason_cause(s, strlen(s));
}

static void test_reason_cause(void **state)
{
    (void)state;
    assert_int_equal(cause("Q.850;cause=16"), 16);
    assert_int_equal(cause("Q.850;cause=17;text=\"User busy\""), 17);
    assert_int_equal(cause("q.850 ; cause=102"), 102);
    assert_int_equal(cause("Q.850;text=\"x\";cause=21"), 21);
    assert_int_equal(cause("Q.850; cause=127"), 127);
    /* Not Q.850, out of range, malformed: no cause. */
    assert_int_equal(cause("SIP;cause=200;text=\"Call completed elsewhere\""), 0);
    assert_int_equal(cause("Q.850;cause=0"), 0);
    assert_int_equal(cause("Q.850;cause=128"), 0);
    assert_int_equal(cause("Q.850;cause=99999"), 0);
    assert_int_equal(cause("Q.850;cause="), 0);
    assert_int_equal(cause("Q.850;cause=x"), 0);
    assert_int_equal(cause("Q.850"), 0);
    assert_int_equal(cause(""), 0);
    /* The length bounds the read: the cause beyond it is not seen. */
    assert_int_equal(sip_reason_cause("Q.850;cause=16", 12), 0);
    assert_int_equal(sip_reason_cause("Q.850;cause=16", 13), 1);
}

struct loop_state {
    int fired;
    int got[3];
    int ngot;
    struct sip_timer *t;
};

static void on_tick(void *arg)
{
    struct loop_state *s = arg;

    s->fired++;
    if (s->ngot == 3)
        sip_loop_stop();
    else
        sip_timer_start(s->t, 5);
}

static void on_msg(void *arg, int id, void *data)
{
    struct loop_state *s = arg;

    (void)data;
    if (s->ngot < 3)
        s->got[s->ngot++] = id;
}

struct pusher {
    struct sip_queue *q;
};

static void *push_three(void *arg)
{
    struct pusher *p = arg;
    int i;

    for (i = 1; i <= 3; i++)
        assert_int_equal(sip_queue_push(p->q, i * 10, NULL), ERR_OK);
    return NULL;
}

/* Messages pushed from another thread arrive on the loop, in order, and
 * timers keep running until the loop is stopped. */
static void test_loop_queue_and_timer(void **state)
{
    struct loop_state s = {0};
    struct pusher p;
    pthread_t th;

    (void)state;
    assert_int_equal(sip_loop_init(), ERR_OK);
    assert_int_equal(sip_queue_new(on_msg, &s, &p.q), ERR_OK);
    s.t = sip_timer_new(on_tick, &s);
    assert_non_null(s.t);
    sip_timer_start(s.t, 1);
    assert_int_equal(pthread_create(&th, NULL, push_three, &p), 0);
    sip_loop_run();
    pthread_join(th, NULL);
    assert_int_equal(s.ngot, 3);
    assert_int_equal(s.got[0], 10);
    assert_int_equal(s.got[1], 20);
    assert_int_equal(s.got[2], 30);
    assert_true(s.fired >= 1);
    sip_timer_free(s.t);
    sip_queue_free(p.q);
    sip_loop_close();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reason_cause),
        cmocka_unit_test(test_loop_queue_and_timer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
