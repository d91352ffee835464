/* SPDX-License-Identifier: MIT */
/*
 * The publisher: a thread per runtime that keeps its statistics file
 * (statsfile.h) fresh for upager-stat, every PUBLISH_MS.
 *
 * None of these fail the runtime: a directory that cannot be used is
 * logged and the runtime runs unpublished.
 */
#ifndef UPAGER_PUBLISH_H
#define UPAGER_PUBLISH_H

struct upg_runtime;

/* Create the file and start the thread (rt->publisher), unless the options
 * say STATSFILE_OFF.  Called once the runtime is up. */
void publish_start(struct upg_runtime *rt);
/* Stop the thread and remove the file.  Before the runtime is torn down. */
void publish_stop(struct upg_runtime *rt);
/* In a forked child (upg_fork_child): the parent's file and thread are
 * not ours; publish a file of the child's own. */
void publish_fork_child(struct upg_runtime *rt);

#endif
