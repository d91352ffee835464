/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static _Atomic int log_level = UPG_LOG_WARN;
static _Thread_local char last_error[512];

static const char *const level_names[] = {
	[UPG_LOG_NONE] = "", [UPG_LOG_ERROR] = "error", [UPG_LOG_WARN] = "warning",
	[UPG_LOG_INFO] = "info", [UPG_LOG_DEBUG] = "debug",
};

void log_set_level(int level)
{
	atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

int log_get_level(void)
{
	return atomic_load_explicit(&log_level, memory_order_relaxed);
}

static void vformat(char *buf, size_t len, const char *fmt, va_list ap)
{
	int n = vsnprintf(buf, len, fmt, ap);

	if (n < 0)
		buf[0] = '\0';
}

void set_last_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vformat(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

void upg_log(int level, const char *fmt, ...)
{
	char msg[512], line[600];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vformat(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (level == UPG_LOG_ERROR)
		memcpy(last_error, msg, sizeof(msg));
	if (level > log_get_level() || level <= UPG_LOG_NONE)
		return;
	n = snprintf(line, sizeof(line), "upager: %s: %s\n",
		     level_names[level], msg);
	if (n > 0) {
		ssize_t r = write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
		(void)r;
	}
}

const char *upg_last_error(void)
{
	return last_error;
}
