// A user's program against the public API, compiled with `strict` by test/api.test.ts: the in-memory
// pipeline (load → analyze → plan → apply, each step taking the previous one's result) and the one-call
// prune(). Prints what it wrote as one JSON line.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { analyze, applyPlan, loadModel, perplexity, plan, prune, refinedPlan, tokenizerFor, type PruneResult, type PruningPlan } from '../../dist/lib/index';

async function main(): Promise<void> {
  const [modelFile, calib, outDir] = process.argv.slice(2);
  const model = await loadModel(modelFile);

  // Step by step, in memory: no analysis or plan file anywhere, the GGUF's own vocabulary as tokenizer.
  const analysis = await analyze(model, { calib, samples: 16, seqLen: 128, sensitivity: { windows: 4 } });
  const p: PruningPlan = plan(analysis.analysis, { ratio: 0.3 });
  const stepwise = path.join(outDir, 'stepwise.gguf');
  const applied = await applyPlan(model, p, { output: stepwise, analysis });
  const warnings: string[] = applied.warnings; // none: the plan and the default compensation agree

  // One call, the same settings, without the measured refinement: the same plan as plan() made above.
  const oneCall = path.join(outDir, 'one-call.gguf');
  const r: PruneResult = await prune(model, { ratio: 0.3, calib, output: oneCall, analyze: { samples: 16, seqLen: 128, sensitivity: { windows: 4 } }, sidecars: false, refine: false });

  // The default one call refines the plan by measurement: step by step, that is refinedPlan on the sensitivity windows.
  const refined: PruningPlan = await refinedPlan(model, analysis, { ratio: 0.3 }, { windows: analysis.sensitivityWindows! });
  const refinedStepwise = path.join(outDir, 'refined-stepwise.gguf');
  await applyPlan(model, refined, { output: refinedStepwise, analysis });
  const refinedCall = path.join(outDir, 'refined-one-call.gguf');
  const rr: PruneResult = await prune(model, { ratio: 0.3, calib, output: refinedCall, analyze: { samples: 16, seqLen: 128, sensitivity: { windows: 4 } }, sidecars: false });
  const chosen: string | undefined = rr.plan.refinement?.chosen;

  const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
  const text = fs.readFileSync(calib, 'utf8').slice(0, 20000);
  const ppl = (await perplexity(await loadModel(oneCall), tokenizerFor(model), text, { seqLen: 128 })).ppl;
  process.stdout.write(
    JSON.stringify({
      achieved: p.achieved.ratio, oneCallAchieved: r.plan.achieved.ratio, stepwise: sha(stepwise), oneCall: sha(oneCall), ppl, warnings,
      refinedStepwise: sha(refinedStepwise), refinedOneCall: sha(refinedCall), chosen, candidates: rr.plan.refinement?.candidates.length, files: fs.readdirSync(outDir).sort(),
    }) + '\n',
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
