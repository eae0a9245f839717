// Inputs are regular files (or folders where a folder is expected), checked before anything opens them: a
// FIFO or a device would block an open() or a read forever, a folder where a file belongs would surface as
// a raw EISDIR, a symlink loop as "no such file". Each case is refused at once, naming the path and what
// it is.
import * as fs from 'node:fs';

import { EntropruneError, EntropruneErrorCode } from './errors';

export type InputKind = 'file' | 'folder' | 'file or folder';

/** The input's stat after following links; throws an EntropruneError naming `path` and the problem. */
export function checkInput(p: string, what: string, kind: InputKind = 'file', code: EntropruneErrorCode = 'EP_IO'): fs.Stats {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    const c = (e as NodeJS.ErrnoException).code;
    if (c === 'ELOOP') throw new EntropruneError(code, `${p}: ${what}: a symbolic link loop`, p);
    if (c === 'EACCES') throw new EntropruneError(code, `${p}: ${what}: permission denied`, p);
    if (c === 'ENOTDIR') throw new EntropruneError(code, `${p}: ${what}: a part of the path is not a folder`, p);
    try {
      if (fs.lstatSync(p).isSymbolicLink()) throw new EntropruneError(code, `${p}: ${what}: a symbolic link to nothing`, p);
    } catch (inner) {
      if (inner instanceof EntropruneError) throw inner;
    }
    throw new EntropruneError(code, `${p}: ${what} not found`, p);
  }
  if (st.isDirectory()) {
    if (kind === 'file') throw new EntropruneError(code, `${p}: ${what}: is a folder, expected a file`, p);
    return st;
  }
  if (!st.isFile()) {
    const type = st.isFIFO() ? 'a named pipe (FIFO)' : st.isSocket() ? 'a socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'not a regular file';
    throw new EntropruneError(code, `${p}: ${what}: is ${type}; only regular files are read`, p);
  }
  if (kind === 'folder') throw new EntropruneError(code, `${p}: ${what}: is a file, expected a folder`, p);
  return st;
}
