/*
 * The names of the directories made in a cowfs mount (and of small ones
 * JavaScript listed), kept as a Bloom filter (name_filter.c), so a lookup
 * of a name that is not there is answered by the addon. The kernel looks
 * every name up before it creates it; with this, a create in such a
 * directory costs one trip to JavaScript, not two.
 */
#ifndef COWVOL_NAME_FILTER_H
#define COWVOL_NAME_FILTER_H

#include <stddef.h>
#include <stdint.h>

typedef struct name_filter name_filter;

name_filter *name_filter_new(void);
void name_filter_free(name_filter *f);
enum { NAME_UNFOLLOWED, NAME_MAYBE, NAME_ABSENT };
/* NAME_ABSENT: `name` is surely not in `dir`; NAME_MAYBE: it may be; NAME_UNFOLLOWED: `dir`'s names are not followed (or `name` is not one the filter answers for). */
int name_filter_check(name_filter *f, uint64_t dir, const char *name);
/* `dir` was just made, so it is empty: its names are followed from now on. */
void name_filter_follow(name_filter *f, uint64_t dir);
/* `dir` holds just `names` (`len` bytes, each name ended by a NUL): its names are followed from now on, unless they already are. */
void name_filter_follow_names(name_filter *f, uint64_t dir, const char *names, size_t len);
/* `name` may be in `dir` from now on: a request that can put it there is about to be answered. */
void name_filter_add(name_filter *f, uint64_t dir, const char *name);
/* Lookups answered "not there" so far. */
uint64_t name_filter_answers(name_filter *f);

#endif
