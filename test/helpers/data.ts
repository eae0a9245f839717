// Where the real models and texts live. CI always has them; locally set ENTROPRUNE_TEST_DATA.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const DATA_DIR = path.resolve(process.env.ENTROPRUNE_TEST_DATA ?? path.join(__dirname, '..', '..', '..', 'shared', 'data'));

/** Absolute path of a file in the test data, or a thrown error that says how to get the data. */
export function dataFile(rel: string): string {
  const p = path.join(DATA_DIR, rel);
  if (!fs.existsSync(p)) {
    throw new Error(
      `test data missing: ${p}\n` +
        'These tests need the shared data folder (real models and texts). Set ENTROPRUNE_TEST_DATA to its path ' +
        '(default ../shared/data beside the repository); see README.md, "Test data".',
    );
  }
  return p;
}

export const STORIES_BIN = 'models/stories260K/stories260K.bin';
export const STORIES_GGUF = 'models/stories260K/stories260K.gguf';
export const STORIES_TOK = 'models/stories260K/tok512.bin';
export const TINY_HF = 'models/tinystories-656K';
export const TINYSTORIES_TEXT = 'text/tinystories/tinystories_validation_head.txt';
export const WIKI_TEST = 'text/wikitext-2-raw/wiki.test.raw';

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'entroprune-vitest-'));
}

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const CLI = path.join(REPO_ROOT, 'bin', 'entroprune.js');
