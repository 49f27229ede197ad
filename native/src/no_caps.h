/*
 * Files of a cowfs mount known to carry no security.capability xattr
 * (no_caps.c). The kernel asks for that xattr before every write to a FUSE
 * file (to drop file capabilities on write), which would cost a trip to
 * JavaScript per write; an answer remembered here costs none.
 */
#ifndef COWVOL_NO_CAPS_H
#define COWVOL_NO_CAPS_H

#include <stdint.h>

typedef struct no_caps no_caps;

#define NO_CAPS_XATTR "security.capability"

no_caps *no_caps_new(void);
void no_caps_free(no_caps *c);
/* Whether `ino` is known to have no capability xattr. */
int no_caps_has(no_caps *c, uint64_t ino);
/* A ticket to take before asking JavaScript; no_caps_add with it notes nothing if a capability was set since. */
uint64_t no_caps_ticket(no_caps *c);
void no_caps_add(no_caps *c, uint64_t ino, uint64_t ticket);
/* A capability xattr is being set on `ino`: forget it, and void every ticket taken before. */
void no_caps_drop(no_caps *c, uint64_t ino);

#endif
