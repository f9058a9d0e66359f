/*
 * list.h - the one intrusive doubly linked list of the core.
 *
 * A bx_list_t is both the head of a list and the link embedded in each
 * element; the list is circular, so insertion and removal never test for
 * the ends. An element's link that is not on any list points at itself
 * (after bx_list_init or bx_list_remove), so "is it linked?" is
 * !bx_list_empty(&e->link), and removing it twice is harmless.
 *
 * The list owns nothing: elements are the caller's, and a list is only the
 * order in which they were put on it. No allocation, no callbacks.
 */
#ifndef BX_LIST_H
#define BX_LIST_H

#include <stddef.h>

typedef struct bx_list {
    struct bx_list *prev, *next;
} bx_list_t;

/* The structure of type `type` whose member `field` is at `p`. */
#define BX_CONTAINER(p, type, field) \
    ((type *)(void *)((char *)(p) - offsetof(type, field)))

/* The initializer of an empty list named `name`, for statics. */
#define BX_LIST_INIT(name) { &(name), &(name) }

/* An empty list, or an unlinked element. */
static inline void bx_list_init(bx_list_t *l)
{
    l->prev = l->next = l;
}

/* 1 when the list `l` has no element (for a link: it is on no list). */
static inline int bx_list_empty(const bx_list_t *l)
{
    return l->next == l;
}

/* Takes `l` off its list (no-op when unlinked) and leaves it unlinked. */
static inline void bx_list_remove(bx_list_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    bx_list_init(l);
}

/* Puts the unlinked `l` last on `head`. */
static inline void bx_list_push_tail(bx_list_t *head, bx_list_t *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

/* Puts the unlinked `l` first on `head`. */
static inline void bx_list_push_head(bx_list_t *head, bx_list_t *l)
{
    l->next = head->next;
    l->prev = head;
    head->next->prev = l;
    head->next = l;
}

/* The first link of `head`, or NULL when the list is empty. */
static inline bx_list_t *bx_list_first(const bx_list_t *head)
{
    return head->next == head ? NULL : head->next;
}

/* Walks `head` in order, declaring `l` (bx_list_t *) on each link and `n`
 * on the next one, so the body may remove (or free) the element at `l`;
 * it must not remove any other element. */
#define BX_LIST_FOREACH_SAFE(l, n, head) \
    for (bx_list_t *l = (head)->next, *n = l->next; l != (head); \
         l = n, n = l->next)

/* Walks `head` in order, declaring `l` on each link; the body must not
 * unlink `l`. */
#define BX_LIST_FOREACH(l, head) \
    for (bx_list_t *l = (head)->next; l != (head); l = l->next)

#endif
