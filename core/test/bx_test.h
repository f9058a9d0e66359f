/*
 * bx_test.h - the tiny harness of the C unit tests.
 *
 * A test file defines `static void test_xxx(void)` functions and a main that
 * runs them with BX_RUN(test_xxx), then returns BX_REPORT(). A failed
 * check records the failure, prints where, and returns from the test.
 * BX_REPORT() prints one line "<file>: N passed, N failed" (the test runner
 * sums these lines) and returns the exit status.
 *
 * Async tests run the loop and end with BX_LOOP_CLOSE(loop), which closes
 * every remaining handle and checks that uv_loop_close() succeeds: a leaked
 * handle fails the test (libuv's MAKE_VALGRIND_HAPPY).
 */
#ifndef BX_TEST_H
#define BX_TEST_H

#include <stdio.h>
#include <string.h>
#include <uv.h>

static int bx_test_passed, bx_test_failed, bx_test_cur_failed;
static const char *bx_test_cur;

#define BX_CHECK(cond)                                                        \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "  %s:%d: %s: check failed: %s\n", __FILE__,     \
                    __LINE__, bx_test_cur, #cond);                            \
            bx_test_cur_failed = 1;                                           \
            return;                                                           \
        }                                                                     \
    } while (0)

#define BX_CHECK_INT(a, b)                                                    \
    do {                                                                      \
        long long bx_a_ = (long long)(a), bx_b_ = (long long)(b);             \
        if (bx_a_ != bx_b_) {                                                 \
            fprintf(stderr, "  %s:%d: %s: %s == %lld, expected %lld\n",      \
                    __FILE__, __LINE__, bx_test_cur, #a, bx_a_, bx_b_);       \
            bx_test_cur_failed = 1;                                           \
            return;                                                           \
        }                                                                     \
    } while (0)

#define BX_CHECK_STR(a, b)                                                    \
    do {                                                                      \
        const char *bx_a_ = (a), *bx_b_ = (b);                                \
        if (!bx_a_ || !bx_b_ || strcmp(bx_a_, bx_b_) != 0) {                  \
            fprintf(stderr, "  %s:%d: %s: %s == \"%s\", expected \"%s\"\n",  \
                    __FILE__, __LINE__, bx_test_cur, #a,                      \
                    bx_a_ ? bx_a_ : "(null)", bx_b_ ? bx_b_ : "(null)");      \
            bx_test_cur_failed = 1;                                           \
            return;                                                           \
        }                                                                     \
    } while (0)

#define BX_RUN(fn)                                                            \
    do {                                                                      \
        bx_test_cur = #fn;                                                    \
        bx_test_cur_failed = 0;                                               \
        fn();                                                                 \
        if (bx_test_cur_failed) {                                             \
            bx_test_failed++;                                                 \
            printf("not ok - %s\n", #fn);                                     \
        } else {                                                              \
            bx_test_passed++;                                                 \
            printf("ok - %s\n", #fn);                                         \
        }                                                                     \
        fflush(stdout);                                                       \
    } while (0)

#define BX_REPORT()                                                           \
    (printf("%s: %d passed, %d failed\n", __FILE__, bx_test_passed,           \
            bx_test_failed),                                                  \
     fflush(stdout), bx_test_failed ? 1 : 0)

__attribute__((unused)) static void bx_test_close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Closes whatever is left on the loop, then requires a clean uv_loop_close. */
#define BX_LOOP_CLOSE(loop)                                                   \
    do {                                                                      \
        uv_walk((loop), bx_test_close_walk, NULL);                            \
        uv_run((loop), UV_RUN_DEFAULT);                                       \
        BX_CHECK_INT(uv_loop_close(loop), 0);                                 \
    } while (0)

#endif
