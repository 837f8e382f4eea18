/*
 * rmap_signals.h - make the `rmap` command die of a fatal signal sent to it.
 *
 * The Swift runtime's backtracer (on by default for Swift executables on Linux)
 * handles SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and SIGQUIT: it prints
 * a backtrace, resets the handler and returns, relying on the faulting
 * instruction to fault again. A signal sent from outside (`kill -ABRT`,
 * `timeout -s ABRT` to get the backtrace of a hung run) has no faulting
 * instruction, so the process printed its backtrace and went on running.
 */
#ifndef RMAP_SIGNALS_H
#define RMAP_SIGNALS_H

/*
 * Wraps the handler installed for each of those signals (the backtracer's, or
 * none): the previous handler runs first (the backtrace is still printed), then
 * the signal is re-raised with its default action, so the process ends with it
 * however it arrived. They are unblocked too (a parent may have started the
 * process with them blocked, and a blocked SIGABRT would wait for ever). Call once, at the start of main (after the runtime has
 * installed its handlers). Returns the number of signals wrapped.
 */
int rmap_die_on_fatal_signals(void);

#endif
