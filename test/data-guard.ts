// Global setup: the shared test-data folder is read-only for the suite. Its files' checksums are taken
// before the first test and compared after the last; any change (a test that wrote into the real data
// instead of a scratch copy) fails the run, naming the files.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { DATA_DIR } from './helpers/data';

function checksums(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!fs.existsSync(dir)) return out;
  for (const rel of fs.readdirSync(dir, { recursive: true }).map(String).sort()) {
    const f = path.join(dir, rel);
    if (fs.lstatSync(f).isFile()) out.set(rel, createHash('sha256').update(fs.readFileSync(f)).digest('hex'));
  }
  return out;
}

/** Checksums of `dir` now; the returned function lists the files that changed since (empty: none). */
export function guardFolder(dir: string): () => string[] {
  const before = checksums(dir);
  return () => {
    const after = checksums(dir);
    return [...new Set([...before.keys(), ...after.keys()])].filter((k) => before.get(k) !== after.get(k)).sort();
  };
}

export default function setup(): () => void {
  const changedSince = guardFolder(DATA_DIR);
  return () => {
    const changed = changedSince();
    // vitest ignores an exception thrown here (it exits 0): the exit code is set explicitly.
    if (changed.length) {
      process.stderr.write(`test-data guard: FAIL: the test-data folder ${DATA_DIR} changed during the tests: ${changed.join(', ')}\n`);
      process.exitCode = 1;
    } else {
      process.stdout.write(`test-data guard: pass: the files under ${DATA_DIR} are unchanged\n`);
    }
  };
}
