/* Minimal assertion helpers for the C/C++ FFI tests: every failure prints
 * file:line, the expression, the status name and the library's last error,
 * then exits non-zero. */
#ifndef TRITTER_FFI_CHECK_H
#define TRITTER_FFI_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tritter_accel.h"

static int tritter_checks_run = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        tritter_checks_run++;                                                        \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* The call must succeed. */
#define CHECK_OK(call)                                                                         \
    do {                                                                                       \
        tritter_status_t st_ = (call);                                                         \
        tritter_checks_run++;                                                                  \
        if (st_ != TRITTER_OK) {                                                               \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call,           \
                    tritter_status_name((uint32_t)st_), tritter_last_error());                 \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* The call must fail with `status`, and the last error must mention `arg`. */
#define CHECK_ERR(call, status, arg)                                                           \
    do {                                                                                       \
        tritter_status_t st_ = (call);                                                         \
        tritter_checks_run++;                                                                  \
        if (st_ != (status)) {                                                                 \
            fprintf(stderr, "%s:%d: %s: expected %s, got %s (%s)\n", __FILE__, __LINE__, #call, \
                    tritter_status_name((uint32_t)(status)), tritter_status_name((uint32_t)st_), \
                    tritter_last_error());                                                     \
            exit(1);                                                                           \
        }                                                                                      \
        if (strstr(tritter_last_error(), (arg)) == NULL) {                                     \
            fprintf(stderr, "%s:%d: %s: message \"%s\" does not name `%s`\n", __FILE__,         \
                    __LINE__, #call, tritter_last_error(), (arg));                             \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

#define CHECK_DONE(name)                                                  \
    do {                                                                  \
        printf("%s: %d checks passed\n", (name), tritter_checks_run);    \
        return 0;                                                         \
    } while (0)

#endif
