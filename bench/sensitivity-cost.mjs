// The measured sensitivities' cost against the calibration pass it follows, measured side by side in one
// run (run by hand): `analyze` with and without them, alternating, medians printed with their ratio.
//   node bench/sensitivity-cost.mjs [model] [--samples 32] [--seq-len 256] [--rounds 3]
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const data = process.env.ENTROPRUNE_TEST_DATA ?? path.join(root, '..', 'shared', 'data');
const argv = process.argv.slice(2);
const opt = (name, dflt) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : dflt; };
const model = argv[0] && !argv[0].startsWith('--') ? argv[0] : path.join(data, 'models', 'stories260K', 'stories260K.gguf');
const calib = path.join(data, 'text', 'tinystories', 'tinystories_validation_head.txt');
const samples = opt('--samples', '32'), seqLen = opt('--seq-len', '256'), rounds = Number(opt('--rounds', '3'));
const out = path.join(os.tmpdir(), `sens-bench-${process.pid}.json`);
const run = (extra) => {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [path.join(root, 'bin', 'entroprune.js'), 'analyze', model, '--calib', calib, '--samples', samples, '--seq-len', seqLen, '-o', out, '--json', '--device', 'cpu', ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number(process.hrtime.bigint() - t0) / 1e9;
};
const without = [], withS = [];
for (let i = 0; i < rounds; i++) { without.push(run(['--no-sensitivity'])); withS.push(run([])); }
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const a = median(without), b = median(withS);
console.log(`${path.basename(model)}: analyze ${a.toFixed(2)} s without sensitivities, ${b.toFixed(2)} s with (sensitivities ${(b - a).toFixed(2)} s = ${((b - a) / a).toFixed(2)}× the rest of analyze; medians of ${rounds}, ${samples} × ${seqLen} calibration tokens)`);
