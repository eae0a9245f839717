// One writer per output, and no leftovers from killed runs. Every command that writes an output takes a lock
// file beside it, created exclusively (O_EXCL) and holding the writer's pid: a second run to the same output
// is refused while the first is alive, instead of both claiming to have written it. Temporary files
// (`.<name>.tmp-<pid>`) and locks left by a run that was killed (SIGKILL cannot be caught) are recognised
// by their dead pid, reported on stderr and removed before the new run starts.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { TEMPORARY_NAME } from './atomic';
import { EntropruneError } from './errors';
import { trackTemporary } from './interrupt';

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const lockName = (output: string) => path.join(path.dirname(path.resolve(output)), `.${path.basename(output)}.lock`);
const LOCK = /^\.(.+)\.lock$/;

/**
 * Remove what killed runs left beside `output`: temporaries and locks of any output in that folder whose
 * writer is gone. Returns the removed paths (each also reported on stderr).
 */
export function cleanLeftovers(output: string, report: (line: string) => void = (l) => process.stderr.write(`entroprune: ${l}\n`)): string[] {
  const dir = path.dirname(path.resolve(output));
  const removed: string[] = [];
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return removed;
  }
  for (const n of names) {
    const p = path.join(dir, n);
    let pid = NaN;
    const t = TEMPORARY_NAME.exec(n);
    if (t) pid = Number(t[2]);
    else if (LOCK.test(n)) {
      try {
        pid = Number(fs.readFileSync(p, 'utf8').trim());
      } catch {
        continue; // released in between
      }
      if (!Number.isInteger(pid)) continue; // not one of ours
    } else continue;
    if (pid === process.pid || alive(pid)) continue;
    fs.rmSync(p, { recursive: true, force: true });
    removed.push(p);
    report(`removed ${p}, left by an interrupted run (pid ${pid})`);
  }
  return removed;
}

const held = new Map<string, number>(); // locks this process holds, with their nesting depth

/**
 * Take the output's lock for the duration of `work` (leftovers of killed runs cleaned first). Reentrant:
 * `prune` holds its output's lock for the whole run and the `applyPlan` inside it takes the same lock again.
 */
export async function withOutputLock<T>(output: string, work: () => Promise<T>): Promise<T> {
  const lock = lockName(output);
  const depth = held.get(lock) ?? 0;
  if (depth > 0) {
    held.set(lock, depth + 1);
    try {
      return await work();
    } finally {
      held.set(lock, depth);
    }
  }
  const parent = path.dirname(path.resolve(output));
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(parent);
  } catch {
    throw new EntropruneError('EP_IO', `${parent}: output directory does not exist`, parent);
  }
  if (!st.isDirectory()) throw new EntropruneError('EP_IO', `${parent}: is not a directory, so ${path.basename(output)} cannot be written in it`, parent);
  cleanLeftovers(output);
  for (let attempt = 0; ; attempt++) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw new EntropruneError('EP_IO', `${output}: cannot take the output lock ${lock}: ${(e as Error).message}`, output);
      let holder = NaN;
      try {
        holder = Number(fs.readFileSync(lock, 'utf8').trim());
      } catch {
        /* vanished in between: retry */
      }
      if (alive(holder) && holder !== process.pid)
        throw new EntropruneError('EP_IO', `${output}: another entroprune run (pid ${holder}) is writing this output; wait for it or choose another path`, output);
      if (attempt > 2) throw new EntropruneError('EP_IO', `${output}: cannot take the output lock ${lock}`, output);
      fs.rmSync(lock, { force: true });
      if (!Number.isNaN(holder)) process.stderr.write(`entroprune: removed ${lock}, left by an interrupted run (pid ${holder})\n`);
    }
  }
  const untrack = trackTemporary(lock);
  held.set(lock, 1);
  try {
    return await work();
  } finally {
    held.delete(lock);
    fs.rmSync(lock, { force: true });
    untrack();
  }
}
