/* SPDX-License-Identifier: MIT */
#ifndef UPAGER_CONFIG_H
#define UPAGER_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "upager.h"

/* Parse a size: digits with an optional K/M/G/T suffix (binary, with an
 * optional trailing B or iB).  0 or -EINVAL (also on overflow). */
int parse_size(const char *s, uint64_t *out);

/* Check that every field of opts is in range; on error the thread's last
 * error names the field.  0 or -EINVAL. */
int options_validate(const struct upg_options *opts);

/* Write one line per option: variable, accepted values, default, meaning. */
void options_describe(FILE *f);

#endif
