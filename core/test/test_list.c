/*
 * test_list.c - the intrusive list of base/list.h: order, removal (twice,
 * of an unlinked element), walking while removing and freeing, container-of.
 */
#include "bx_test.h"
#include "base/list.h"

#include <stdlib.h>

typedef struct {
    int v;
    bx_list_t link;
    bx_list_t other;            /* a second list the same element is on */
} item_t;

/* The values of `head` in order, into out[] (at most n); returns the count. */
static int values(const bx_list_t *head, int *out, int n)
{
    int k = 0;

    BX_LIST_FOREACH(l, head) {
        if (k < n)
            out[k] = BX_CONTAINER(l, item_t, link)->v;
        k++;
    }
    return k;
}

static void test_empty(void)
{
    bx_list_t head;
    static bx_list_t st = BX_LIST_INIT(st);
    item_t a = { 1, { NULL, NULL }, { NULL, NULL } };

    bx_list_init(&head);
    BX_CHECK(bx_list_empty(&head));
    BX_CHECK(bx_list_empty(&st));
    BX_CHECK(bx_list_first(&head) == NULL);
    bx_list_init(&a.link);
    BX_CHECK(bx_list_empty(&a.link));     /* unlinked */
    bx_list_remove(&a.link);              /* harmless */
    BX_CHECK(bx_list_empty(&a.link));
    bx_list_push_tail(&st, &a.link);
    BX_CHECK(!bx_list_empty(&st));
    BX_CHECK(!bx_list_empty(&a.link));    /* linked */
    bx_list_remove(&a.link);
    BX_CHECK(bx_list_empty(&st));
}

static void test_order(void)
{
    bx_list_t head;
    item_t it[5];
    int v[8];

    bx_list_init(&head);
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        bx_list_init(&it[i].link);
    }
    bx_list_push_tail(&head, &it[1].link);
    bx_list_push_tail(&head, &it[2].link);
    bx_list_push_head(&head, &it[0].link);
    bx_list_push_tail(&head, &it[3].link);
    bx_list_push_head(&head, &it[4].link);
    BX_CHECK_INT(values(&head, v, 8), 5);
    BX_CHECK_INT(v[0], 4);
    BX_CHECK_INT(v[1], 0);
    BX_CHECK_INT(v[2], 1);
    BX_CHECK_INT(v[3], 2);
    BX_CHECK_INT(v[4], 3);
    BX_CHECK(bx_list_first(&head) == &it[4].link);
    BX_CHECK(BX_CONTAINER(bx_list_first(&head), item_t, link) == &it[4]);

    /* from the middle, the ends, and twice */
    bx_list_remove(&it[1].link);
    bx_list_remove(&it[1].link);
    bx_list_remove(&it[4].link);
    bx_list_remove(&it[3].link);
    BX_CHECK_INT(values(&head, v, 8), 2);
    BX_CHECK_INT(v[0], 0);
    BX_CHECK_INT(v[1], 2);
    /* a removed element can go back on */
    bx_list_push_tail(&head, &it[4].link);
    BX_CHECK_INT(values(&head, v, 8), 3);
    BX_CHECK_INT(v[2], 4);
}

static void test_two_lists(void)
{
    bx_list_t a, b;
    item_t it[3];
    int n = 0;

    bx_list_init(&a);
    bx_list_init(&b);
    for (int i = 0; i < 3; i++) {
        it[i].v = i;
        bx_list_push_tail(&a, &it[i].link);
        bx_list_push_head(&b, &it[i].other);
    }
    bx_list_remove(&it[1].link);            /* off a, still on b */
    BX_LIST_FOREACH(l, &b) {
        item_t *x = BX_CONTAINER(l, item_t, other);
        BX_CHECK_INT(x->v, 2 - n);
        n++;
    }
    BX_CHECK_INT(n, 3);
    BX_CHECK(BX_CONTAINER(a.next->next, item_t, link) == &it[2]);
}

/* Removing (and freeing) the current element while walking: every element
 * is seen once, and what stays is in order. */
static void test_remove_while_walking(void)
{
    bx_list_t head;
    int seen = 0, v[64];

    bx_list_init(&head);
    for (int i = 0; i < 50; i++) {
        item_t *x = malloc(sizeof(*x));
        x->v = i;
        bx_list_push_tail(&head, &x->link);
    }
    BX_LIST_FOREACH_SAFE(l, n, &head) {
        item_t *x = BX_CONTAINER(l, item_t, link);
        BX_CHECK_INT(x->v, seen);
        seen++;
        if (x->v % 3 == 0) {
            bx_list_remove(&x->link);
            free(x);
        }
    }
    BX_CHECK_INT(seen, 50);
    BX_CHECK_INT(values(&head, v, 64), 33);
    for (int i = 0; i < 33; i++)
        BX_CHECK(v[i] % 3 != 0 && (i == 0 || v[i] > v[i - 1]));
    /* drain from the front, freeing everything */
    while (!bx_list_empty(&head)) {
        item_t *x = BX_CONTAINER(bx_list_first(&head), item_t, link);
        bx_list_remove(&x->link);
        free(x);
    }
    BX_CHECK(bx_list_empty(&head));
}

int main(void)
{
    BX_RUN(test_empty);
    BX_RUN(test_order);
    BX_RUN(test_two_lists);
    BX_RUN(test_remove_while_walking);
    return BX_REPORT();
}
