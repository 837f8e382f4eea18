/*
 * rmap_record.h - the process half of `rmap record` (Sources/RmapTools/Record).
 *
 * The tracepoints (tracefs) say what a process tree did to memory, but not which
 * file an mmap'd descriptor names, nor the mappings the kernel's ELF loader made
 * at exec (binfmt_elf maps them inside execve, no system call of the program's).
 * Both are read from /proc while the task is held at a system call by a seccomp
 * user-notification filter on mmap and brk (no ptrace): the task cannot run
 * while the recorder reads, so what is read is the state at that call.
 */
#ifndef RMAP_RECORD_H
#define RMAP_RECORD_H

#include <stddef.h>

/*
 * Runs path (argv, envp: the recorder's environment) as a child whose mmap and brk
 * calls (and those of all its descendants) notify the recorder first. Before the
 * child execs, writes its pid to pid_file (the tracefs instance's set_event_pid)
 * and "1" to on_file (tracing_on). For every notification writes to out_fd:
 *   N tid nr a0 a1 a2 a3 a4 a5          the call (x86-64 numbers, args in hex)
 *   F size dev ino path                  mmap of a file descriptor: what it names
 *   M <a /proc/tid/maps line>            every mapping at that moment
 *   P start end                          a run of pages present (or swapped) in pagemap
 *   E                                    end of the record
 * then lets the call run (SECCOMP_USER_NOTIF_FLAG_CONTINUE).
 * Returns the child's wait status (>= 0), or -1 with a message in err.
 * SIGINT, SIGTERM and SIGHUP kill the child (and so end the call, which then
 * returns its status) instead of the recorder, so that the caller can restore
 * the tracing state; the previous handlers are back when it returns.
 */
int rmap_record_run(const char *path, char *const argv[], const char *pid_file,
                    const char *on_file, int out_fd, char *err, size_t errlen);

#endif
