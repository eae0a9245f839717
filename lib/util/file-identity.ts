// Identity, not spelling: whether an output would replace or sit over one of the run's inputs is decided
// by device and inode after following links (a symlinked folder, a hard link, `./x` against `x` all name
// the same file), and for folders by every file inside them. path.resolve comparisons miss all of these.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { EntropruneError } from './errors';

/** p's real path after following links, or null when it does not exist. */
function realPath(p: string): string | null {
  try {
    return fs.realpathSync(p);
  } catch {
    return null;
  }
}

/** The identities (`dev:ino`) of p and, for a folder, of every file and folder under it (links followed). */
function identitiesUnder(p: string, out: Map<string, string>, depth = 0): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return;
  }
  const key = `${st.dev}:${st.ino}`;
  if (out.has(key)) return;
  out.set(key, p);
  if (depth > 8 || !st.isDirectory()) return;
  for (const name of fs.readdirSync(p)) identitiesUnder(path.join(p, name), out, depth + 1);
}

const within = (child: string, parent: string) => child === parent || child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);

/**
 * Refuse (whatever --force says) an output that is or contains any input: the same file
 * by identity, a folder holding an input (replacing the folder would delete it), or a path whose existing
 * target is an input reached through links. Inputs that do not exist are ignored (they fail elsewhere).
 */
export function assertOutputSparesInputs(output: string, inputs: (string | undefined)[]): void {
  const inputIds = new Map<string, string>();
  for (const i of inputs) if (i) identitiesUnder(i, inputIds);
  const outputIds = new Map<string, string>();
  identitiesUnder(output, outputIds);
  for (const [key, at] of outputIds) {
    const input = inputIds.get(key);
    if (input !== undefined)
      throw new EntropruneError(
        'EP_INVALID_ARGUMENT',
        `${output}: the output ${at === output ? 'is' : `holds ${at}, which is`} the input ${input} (the same file, reached through another path): choose another output path`,
        output,
      );
  }
  // An output that does not exist yet but whose real location is an input folder's file is covered above
  // once written; what remains is an output folder to be created where an input already lives under it.
  const outReal = realPath(output) ?? path.resolve(output);
  for (const i of inputs) {
    const real = i ? realPath(i) : null;
    if (real && within(real, outReal))
      throw new EntropruneError('EP_INVALID_ARGUMENT', `${output}: the output would replace ${i}, an input of this run: choose another output path`, output);
  }
}
