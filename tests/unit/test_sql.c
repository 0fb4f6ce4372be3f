/* test_sql: the catalogue's rewriting for SQLite (sql_for_sqlite), and that
 * no statement of the catalogue keeps anything of PostgreSQL's dialect once
 * rewritten. That every statement also prepares and behaves on both
 * databases is test_store's job. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "store/sql.h"

static void rewrite_is(const char *pg, const char *want)
{
    char out[512];

    assert_int_equal(sql_for_sqlite(pg, out, sizeof(out)), ERR_OK);
    assert_string_equal(out, want);
}

static void test_placeholders_and_casts(void **state)
{
    (void)state;
    rewrite_is("SELECT 1", "SELECT 1");
    rewrite_is("UPDATE t SET a = $2 WHERE b = $1", "UPDATE t SET a = ?2 WHERE b = ?1");
    rewrite_is("VALUES ($10, $5::bytea, $19::bigint)", "VALUES (?10, ?5, ?19)");
    rewrite_is("CASE WHEN $3::boolean THEN $4::text ELSE name END",
               "CASE WHEN ?3 THEN ?4 ELSE name END");
    /* A dollar sign not followed by a digit is left alone. */
    rewrite_is("SELECT '$' || 'ACTIVE'", "SELECT '$' || 'ACTIVE'");
}

static void test_row_locks(void **state)
{
    (void)state;
    rewrite_is("SELECT id FROM numbers WHERE e164 = $1 FOR UPDATE",
               "SELECT id FROM numbers WHERE e164 = ?1");
    rewrite_is("SELECT 1 FROM apps WHERE app_id = $1 FOR KEY SHARE",
               "SELECT 1 FROM apps WHERE app_id = ?1");
    rewrite_is("SELECT id FROM n WHERE e = $1 FOR NO KEY UPDATE", "SELECT id FROM n WHERE e = ?1");
    rewrite_is("SELECT id FROM n FOR SHARE", "SELECT id FROM n");
    /* Only a final lock clause goes. */
    rewrite_is("SELECT ' FOR UPDATE' AS x", "SELECT ' FOR UPDATE' AS x");
}

static void test_clock(void **state)
{
    char out[sizeof(SQL_NOW_MS_SQLITE) + 6]; /* "SELECT " is 7 */

    (void)state;
    rewrite_is("SELECT " SQL_NOW_MS, "SELECT " SQL_NOW_MS_SQLITE);
    rewrite_is("DELETE FROM t WHERE at < " SQL_NOW_MS " - $1 AND x = $2::text",
               "DELETE FROM t WHERE at < " SQL_NOW_MS_SQLITE " - ?1 AND x = ?2");
    /* The clock does not fit, or only just. */
    assert_int_equal(sql_for_sqlite("SELECT " SQL_NOW_MS, out, sizeof(out)), ERR_INVALID);
    assert_int_equal(sql_for_sqlite(SQL_NOW_MS, out, sizeof(SQL_NOW_MS_SQLITE)), ERR_OK);
    assert_string_equal(out, SQL_NOW_MS_SQLITE);
    assert_int_equal(sql_for_sqlite(SQL_NOW_MS, out, sizeof(SQL_NOW_MS_SQLITE) - 1), ERR_INVALID);
}

static void test_too_small(void **state)
{
    char out[8];

    (void)state;
    assert_int_equal(sql_for_sqlite("SELECT 1", out, sizeof(out)), ERR_INVALID);
    assert_int_equal(sql_for_sqlite("SELECT", out, sizeof(out)), ERR_OK);
    assert_string_equal(out, "SELECT");
    assert_int_equal(sql_for_sqlite("SELECT 1", out, 0), ERR_INVALID);
}

static void test_catalogue(void **state)
{
    char out[4096];
    int i;

    (void)state;
    for (i = 0; i < SQL_COUNT; i++) {
        assert_non_null(sql_catalogue[i].name);
        assert_non_null(sql_catalogue[i].text);
        assert_int_equal(strncmp(sql_catalogue[i].name, "SQL_", 4), 0);
        assert_int_equal(sql_for_sqlite(sql_catalogue[i].text, out, sizeof(out)), ERR_OK);
        assert_null(strchr(out, '$'));
        assert_null(strstr(out, "::"));
        assert_null(strstr(out, " FOR "));
        assert_null(strstr(out, "clock_timestamp"));
    }
    assert_string_equal(sql_catalogue[SQL_NUM_LOCK].name, "SQL_NUM_LOCK");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placeholders_and_casts),
        cmocka_unit_test(test_row_locks),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_too_small),
        cmocka_unit_test(test_catalogue),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
