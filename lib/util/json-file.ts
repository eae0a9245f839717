// Reading a JSON file users hand us: a parse or read failure is an EntropruneError naming the file.
import * as fs from 'node:fs';

import { checkInput } from './input-file';
import { EntropruneError, EntropruneErrorCode } from './errors';

export function readJsonFile(file: string, what: string, code: EntropruneErrorCode = 'EP_FORMAT'): unknown {
  checkInput(file, what, 'file', code === 'EP_FORMAT' ? 'EP_IO' : code);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new EntropruneError(code, `${file}: cannot read ${what}: ${(e as Error).message}`, file);
  }
}
