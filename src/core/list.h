/*
 * list.h — an intrusive, unordered, doubly linked list, in the manner of BSD's <sys/queue.h> LIST.
 *
 * Elements embed their link (LIST_LINK), and a list is a plain pointer to its first element (NULL
 * when empty). A link points back at the pointer that points at its element, so an element leaves
 * its list in O(1) without being told which list that is, and list_remove of an element that is on
 * no list does nothing. Nothing is allocated: the owner of the elements owns the memory, and an
 * element is on at most one list per link it embeds. A new element goes first; code that needs an
 * order keeps its own.
 *
 *     struct conn { ...; LIST_LINK(conn) link; };   zeroed (xcalloc, memset) before its first insert
 *     struct conn *conns = NULL;
 *     list_insert(&conns, c, link);
 *     for (struct conn *c = conns; c; c = c->link.next) ...
 *     list_remove(c, link);
 *
 * Removing the element a loop stands on is safe when the loop read its next one first.
 */
#ifndef AGENTD_CORE_LIST_H
#define AGENTD_CORE_LIST_H

#include <stddef.h>

/* The link a struct type embeds, once per list it can be on. */
#define LIST_LINK(type)      \
    struct {                 \
        struct type *next;   \
        struct type **prevp; \
    }

/* Puts elm first on the list whose first-element pointer is *headp. elm must be on no list. */
#define list_insert(headp, elm, field)                    \
    do {                                                  \
        if (((elm)->field.next = *(headp)) != NULL)       \
            (*(headp))->field.prevp = &(elm)->field.next; \
        *(headp) = (elm);                                 \
        (elm)->field.prevp = (headp);                     \
    } while (0)

/* Takes elm off its list, if it is on one. */
#define list_remove(elm, field)                                      \
    do {                                                             \
        if ((elm)->field.prevp != NULL) {                            \
            if ((elm)->field.next != NULL)                           \
                (elm)->field.next->field.prevp = (elm)->field.prevp; \
            *(elm)->field.prevp = (elm)->field.next;                 \
            (elm)->field.next = NULL;                                \
            (elm)->field.prevp = NULL;                               \
        }                                                            \
    } while (0)

/* Whether elm is on a list. */
#define list_linked(elm, field) ((elm)->field.prevp != NULL)

#endif
