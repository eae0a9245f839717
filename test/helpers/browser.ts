// A real headless browser for the report tests: Debian's chromium (installed by .ci/run), or the binary
// named by ENTROPRUNE_CHROMIUM.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';

export function chromiumPath(): string {
  const candidates = [process.env.ENTROPRUNE_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].filter((p): p is string => Boolean(p));
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error('no headless browser found: install Debian\'s chromium (apt-get install chromium) or set ENTROPRUNE_CHROMIUM to a Chrome/Chromium binary');
  return found;
}

const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--no-first-run', '--disable-extensions'];

/** The DOM after the page's load handlers ran. */
export function dumpDom(file: string): string {
  const r = spawnSync(chromiumPath(), [...flags, '--virtual-time-budget=5000', '--dump-dom', `file://${file}`], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`chromium --dump-dom failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

export function screenshot(file: string, png: string, width = 1280, height = 2400): void {
  const r = spawnSync(chromiumPath(), [...flags, `--window-size=${width},${height}`, `--screenshot=${png}`, `file://${file}`], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 || !fs.existsSync(png)) throw new Error(`chromium --screenshot failed (${r.status}): ${r.stderr}`);
}
