/* SPDX-License-Identifier: MIT */
/*
 * Logging.  Messages go to stderr with write(2): no stdio locks and no
 * malloc, so any thread may log, the fault handler included.  Errors are
 * also kept as the calling thread's upg_last_error().
 */
#ifndef UPAGER_LOG_H
#define UPAGER_LOG_H

#include "upager.h"

void log_set_level(int level);
int log_get_level(void);

/* Log at `level` if enabled.  Level UPG_LOG_ERROR also sets the thread's
 * last error, whatever the log level. */
void upg_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Set the thread's last error without logging it. */
void set_last_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define log_error(...) upg_log(UPG_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) upg_log(UPG_LOG_WARN, __VA_ARGS__)
#define log_info(...) upg_log(UPG_LOG_INFO, __VA_ARGS__)
#define log_debug(...) upg_log(UPG_LOG_DEBUG, __VA_ARGS__)

#endif
