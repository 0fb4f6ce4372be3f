/* test_ratelimit: the per-key token bucket (burst, refill, headers' values,
 * isolation between keys, recycling of buckets when the table is full). */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/ratelimit.h"

#define SEC 1000000000LL

static void burst_then_refused(void **state)
{
    struct ratelimit *rl = ratelimit_new(2.0, 3);
    struct ratelimit_info info;
    int i;

    (void)state;
    assert_non_null(rl);
    for (i = 0; i < 3; i++) {
        assert_true(ratelimit_take(rl, 1, 10 * SEC, &info));
        assert_int_equal(info.limit, 3);
        assert_int_equal(info.remaining, 2 - i);
        assert_int_equal(info.retry_after, 0);
    }
    assert_false(ratelimit_take(rl, 1, 10 * SEC, &info));
    assert_int_equal(info.remaining, 0);
    assert_int_equal(info.retry_after, 1); /* 1 token at 2/s: 0.5 s, rounded up */
    assert_int_equal(info.reset_s, 2);     /* 3 tokens at 2/s: 1.5 s, rounded up */
    ratelimit_free(rl);
}

static void refills_with_time_up_to_burst(void **state)
{
    struct ratelimit *rl = ratelimit_new(10.0, 5);
    struct ratelimit_info info;
    int i;

    (void)state;
    for (i = 0; i < 5; i++)
        assert_true(ratelimit_take(rl, 7, 0, &info));
    assert_false(ratelimit_take(rl, 7, 0, &info));
    /* 0.25 s at 10/s: 2.5 tokens, so two requests pass and the third not. */
    assert_true(ratelimit_take(rl, 7, SEC / 4, &info));
    assert_true(ratelimit_take(rl, 7, SEC / 4, &info));
    assert_false(ratelimit_take(rl, 7, SEC / 4, &info));
    /* A long pause refills to the burst, not beyond. */
    assert_true(ratelimit_take(rl, 7, 100 * SEC, &info));
    assert_int_equal(info.remaining, 4);
    ratelimit_free(rl);
}

static void keys_have_their_own_buckets(void **state)
{
    struct ratelimit *rl = ratelimit_new(1.0, 1);
    struct ratelimit_info info;

    (void)state;
    assert_true(ratelimit_take(rl, 1, 0, &info));
    assert_false(ratelimit_take(rl, 1, 0, &info));
    assert_true(ratelimit_take(rl, 2, 0, &info));
    assert_true(ratelimit_take(rl, 3, 0, &info));
    assert_false(ratelimit_take(rl, 2, 0, &info));
    ratelimit_free(rl);
}

static void full_table_recycles_least_recent(void **state)
{
    struct ratelimit *rl = ratelimit_new(1.0, 1);
    struct ratelimit_info info;
    int64_t k;

    (void)state;
    /* Many more keys than slots: every new key still gets a full bucket. */
    for (k = 1; k <= RATELIMIT_SHARDS * RATELIMIT_SHARD_SLOTS * 4; k++)
        assert_true(ratelimit_take(rl, k, k, &info));
    ratelimit_free(rl);
}

static void bad_parameters(void **state)
{
    (void)state;
    assert_null(ratelimit_new(0.0, 10));
    assert_null(ratelimit_new(-1.0, 10));
    assert_null(ratelimit_new(1.0, 0));
    ratelimit_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_then_refused),
        cmocka_unit_test(refills_with_time_up_to_burst),
        cmocka_unit_test(keys_have_their_own_buckets),
        cmocka_unit_test(full_table_recycles_least_recent),
        cmocka_unit_test(bad_parameters),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
