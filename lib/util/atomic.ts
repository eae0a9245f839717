// Outputs are written under a temporary name beside the target and renamed when complete, so an
// interrupted run never leaves a half-written file under the final name.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { EntropruneError } from './errors';
import { trackTemporary } from './interrupt';

/** The one naming of temporaries, `.<name>.tmp-<pid>` beside the target (output-lock.ts recognises it). */
export const temporaryPath = (file: string): string => path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
export const TEMPORARY_NAME = /^\.(.+)\.tmp-(\d+)$/;

export function writeFileAtomic(file: string, data: string | Buffer): void {
  const tmp = temporaryPath(file);
  const untrack = trackTemporary(tmp);
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new EntropruneError('EP_IO', `${file}: cannot write: ${(e as Error).message}`, file);
  } finally {
    untrack();
  }
}
