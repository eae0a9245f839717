// The test-data guard itself: it reports a changed, added or removed file, and nothing when all is equal.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { guardFolder } from './data-guard';
import { tempDir } from './helpers/data';

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('test-data guard', () => {
  it('names every file that changed, appeared or vanished, and nothing else', () => {
    fs.mkdirSync(path.join(dir, 'models'), { recursive: true });
    for (const f of ['a.txt', 'models/b.bin', 'c.txt']) fs.writeFileSync(path.join(dir, f), f);
    const changedSince = guardFolder(dir);
    expect(changedSince()).toEqual([]);
    fs.appendFileSync(path.join(dir, 'models/b.bin'), 'x');
    fs.writeFileSync(path.join(dir, 'new.txt'), 'n');
    fs.rmSync(path.join(dir, 'c.txt'));
    expect(changedSince()).toEqual(['c.txt', path.join('models', 'b.bin'), 'new.txt'].sort());
  });
});
