// Ctrl-C and SIGTERM: one process-wide AbortSignal that cancels the running native job (checked between
// layers), removal of every temporary output still in flight, and a hard exit with 130 if the work does not
// wind down by itself within a grace period (a native writer cannot be cancelled mid-tensor; its file is
// already gone by then). A second signal exits at once.
import * as fs from 'node:fs';

const temporaries = new Set<string>();
let controller: AbortController | undefined;

/** Track a temporary output path; the returned function stops tracking it (call it once it is renamed). */
export function trackTemporary(p: string): () => void {
  temporaries.add(p);
  return () => temporaries.delete(p);
}

export function removeTemporaries(): void {
  for (const p of temporaries) fs.rmSync(p, { recursive: true, force: true });
  temporaries.clear();
}

export function interrupted(): boolean {
  return controller?.signal.aborted ?? false;
}

/** The process-wide interrupt signal; installs the SIGINT / SIGTERM handlers on first use. */
export function interruptSignal(graceMs = 3000): AbortSignal {
  if (controller) return controller.signal;
  const c = new AbortController();
  controller = c;
  const onSignal = () => {
    const leave = () => {
      removeTemporaries();
      process.stderr.write('entroprune: interrupted\n');
      process.exit(130);
    };
    if (c.signal.aborted) leave();
    c.abort();
    removeTemporaries();
    setTimeout(leave, graceMs).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.once('exit', removeTemporaries);
  return c.signal;
}
