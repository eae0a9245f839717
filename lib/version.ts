import * as fs from 'node:fs';
import * as path from 'node:path';

// package.json sits one level above lib/ (sources, vitest) or two above dist/lib/ (compiled).
function readVersion(): string {
  for (const rel of ['..', '../..']) {
    const file = path.resolve(__dirname, rel, 'package.json');
    if (fs.existsSync(file)) return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return '0.0.0';
}

export const VERSION: string = readVersion();
