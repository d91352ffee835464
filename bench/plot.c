/* SPDX-License-Identifier: MIT */
/*
 * --plot: the latency distributions, upager's and the kernel's, one panel
 * per row, as CDFs on a log x-axis, drawn by gnuplot when it is installed.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define CDF_POINTS 256
#define PANEL_HEIGHT 320

static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	while (path && *path) {
		size_t len = strcspn(path, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, prog);
		if (len && !access(buf, X_OK))
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

static bool plottable(const struct row *row)
{
	for (int side = 0; side < NSIDES; side++)
		if (row->side[side].available && row->side[side].n)
			return true;
	return false;
}

static void cdf_point(FILE *f, const struct side *s, uint64_t i)
{
	fprintf(f, "%.4f %.6f\n", (double)s->ns[i] / 1e3,
		(double)(i + 1) / (double)s->n);
}

/*
 * The sorted samples thinned to evenly spaced ranks, plus the tail ranks
 * that even spacing would skip: the CDF's shape without a million lines.
 */
static void data_block(FILE *f, size_t r, int side, const struct side *s)
{
	static const double tail[] = { 0.999, 0.9999 };
	uint64_t last = s->n - 1;

	fprintf(f, "$r%zu%s << EOD\n", r, side_name(side));
	for (uint64_t i = 0; i < CDF_POINTS - 1; i++)
		cdf_point(f, s, i * last / (CDF_POINTS - 1));
	for (size_t t = 0; t < sizeof(tail) / sizeof(tail[0]); t++) {
		uint64_t i = (uint64_t)(tail[t] * (double)last);

		if (i > (CDF_POINTS - 2) * last / (CDF_POINTS - 1))
			cdf_point(f, s, i);
	}
	cdf_point(f, s, last);
	fprintf(f, "EOD\n");
}

static void panel(FILE *f, const struct row *row, size_t r)
{
	const char *sep = "plot ";

	fprintf(f, "set title \"%s (%u thread%s)\"\n", row->name, row->threads,
		row->threads > 1 ? "s" : "");
	for (int side = 0; side < NSIDES; side++) {
		const struct side *s = &row->side[side];

		if (!s->available || !s->n)
			continue;
		fprintf(f, "%s$r%zu%s using 1:2 with steps lw 2 title \"%s\"",
			sep, r, side_name(side), side_name(side));
		sep = ", ";
	}
	fprintf(f, "\n");
}

static const char *terminal(const char *path)
{
	size_t len = strlen(path);

	if (len > 4 && !strcmp(path + len - 4, ".png"))
		return "pngcairo";
	return "svg dynamic background rgb 'white'";
}

static void script(FILE *f, const struct bench *b, const char *path,
		   size_t panels)
{
	size_t rows = (panels + 1) / 2;

	for (size_t r = 0; r < b->nrows; r++) {
		for (int side = 0; side < NSIDES; side++) {
			const struct side *s = &b->rows[r].side[side];

			if (s->available && s->n)
				data_block(f, r, side, s);
		}
	}
	fprintf(f, "set terminal %s size 1100,%zu font ',10'\n",
		terminal(path), rows * PANEL_HEIGHT + 40);
	fprintf(f, "set output '");
	/* In gnuplot's single quotes, a quote is written twice. */
	for (const char *p = path; *p; p++)
		fprintf(f, *p == '\'' ? "''" : "%c", *p);
	fprintf(f, "'\n");
	fprintf(f, "set logscale x\nset grid\nset key bottom right\n"
		   "set xlabel 'latency per touch (us, log)'\n"
		   "set ylabel 'fraction of touches'\nset yrange [0:1]\n");
	fprintf(f, "set multiplot layout %zu,2 title 'upager-bench: latency "
		   "CDFs, upager vs kernel (THP off)'\n", rows);
	for (size_t r = 0; r < b->nrows; r++)
		if (plottable(&b->rows[r]))
			panel(f, &b->rows[r], r);
	fprintf(f, "unset multiplot\n");
}

int report_plot(const struct bench *b, const char *path)
{
	size_t panels = 0;
	FILE *f;
	int status;

	for (size_t r = 0; r < b->nrows; r++)
		panels += plottable(&b->rows[r]);
	if (!panels) {
		fprintf(stderr, "upager-bench: nothing measured, no plot "
			"drawn\n");
		return 0;
	}
	if (!in_path("gnuplot")) {
		fprintf(stderr, "upager-bench: gnuplot is not installed (no "
			"gnuplot in PATH); no plot drawn, the rest stands\n");
		return 0;
	}
	f = popen("gnuplot", "w");
	if (!f) {
		fprintf(stderr, "upager-bench: cannot run gnuplot: %s\n",
			strerror(errno));
		return -errno;
	}
	script(f, b, path, panels);
	status = pclose(f);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "upager-bench: gnuplot failed; %s not drawn\n",
			path);
		return -EIO;
	}
	return 0;
}
