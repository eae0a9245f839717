// Stress run (by hand, not in CI): concurrent `prune` runs — 4 on distinct outputs, 2 on one shared output —
// killed with SIGKILL at random moments, repeated. Afterwards every output must be complete and valid or
// absent, the input unchanged, and the next run must report and clean any leftovers. Prints one line per
// round and a final `N passed, N failed`; exits non-zero on any failure.
//
//   node bench/stress-kill.mjs [rounds=20] [model] [calib]
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const data = process.env.ENTROPRUNE_TEST_DATA ?? path.join(root, '..', 'shared', 'data');
const rounds = Number(process.argv[2] ?? 20);
const source = process.argv[3] ?? path.join(data, 'models', 'stories260K', 'stories260K.gguf');
const calib = process.argv[4] ?? path.join(data, 'text', 'tinystories', 'tinystories_validation_head.txt');
const cli = path.join(root, 'bin', 'entroprune.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'entroprune-stress-'));
const model = path.join(dir, 'input.gguf');
fs.copyFileSync(source, model);
const sha = (f) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const inputSha = sha(model);
const args = (out) => ['prune', model, '--ratio', '0.3', '--calib', calib, '--samples', '8', '--seq-len', '128', '--no-verify', '--force', '-o', out];

function valid(out) {
  const r = spawnSync(process.execPath, [cli, 'info', out, '--json'], { encoding: 'utf8' });
  return r.status === 0;
}

let passed = 0;
let failed = 0;
for (let round = 0; round < rounds; round++) {
  const outs = [0, 1, 2, 3].map((i) => path.join(dir, `out-${i}.gguf`));
  const shared = path.join(dir, 'shared.gguf');
  const targets = [...outs, shared, shared];
  const procs = targets.map((out) => spawn(process.execPath, [cli, ...args(out)], { stdio: 'ignore' }));
  // Kill each at a random moment in the first 3 s (some finish first).
  const exits = procs.map((p) => new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal }))));
  procs.forEach((p) => setTimeout(() => { try { p.kill('SIGKILL'); } catch { /* already gone */ } }, Math.random() * 3000));
  await Promise.all(exits);
  const problems = [];
  if (sha(model) !== inputSha) problems.push('the input changed');
  for (const out of new Set(targets)) if (fs.existsSync(out) && !valid(out)) problems.push(`${path.basename(out)} exists but is not a valid model`);
  // The next run reports and cleans what the killed ones left.
  const leftovers = () => fs.readdirSync(dir).filter((n) => /\.tmp-\d+$|\.lock$/.test(n));
  const before = leftovers();
  const next = spawnSync(process.execPath, [cli, ...args(shared)], { encoding: 'utf8' });
  if (next.status !== 0) problems.push(`the next run failed: ${next.stderr.trim().split('\n').pop()}`);
  for (const n of before) if (!next.stderr.includes(n) && fs.existsSync(path.join(dir, n))) problems.push(`leftover ${n} neither reported nor removed`);
  // Leftovers of other outputs are cleaned by a run in the same folder too (temporaries of any output).
  const after = leftovers();
  if (after.length) problems.push(`still left: ${after.join(', ')}`);
  if (!valid(shared)) problems.push('the next run\'s output is not valid');
  console.log(`round ${round + 1}: ${before.length} leftovers before the next run; ${problems.length ? `FAIL: ${problems.join('; ')}` : 'pass'}`);
  if (problems.length) failed++;
  else passed++;
}
fs.rmSync(dir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
