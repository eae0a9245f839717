// The one place that decides the process exit code of a command that ran to the end. A command whose
// checks failed (verify rows, bench engines) calls checkFailed(); main() turns that into exit code 1, so no
// later assignment (bin/entroprune.js sets process.exitCode from main's result) can lose it.
let failed = false;

/** A check printed `fail`: the command finishes its output, and the process exits 1. */
export function checkFailed(): void {
  failed = true;
}

/** Whether a check failed in this process (main() reads it once the command returns). */
export function anyCheckFailed(): boolean {
  return failed;
}

/** For tests that run main() more than once in one process. */
export function resetCheckStatus(): void {
  failed = false;
}
