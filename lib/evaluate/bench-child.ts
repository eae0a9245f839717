// Child process of `entroprune bench` for entroprune's engine: prefill a prompt and decode greedily through
// the KV cache, then report speeds and this process's peak memory. One process per measurement, so the
// peak is the model's own (plus the Node runtime, the same for every row).
//   node bench-child.js '{"model": "...", "prompt": P, "generate": G, "threads": K}'
import { loadModel } from '../load/model';
import { setThreads } from '../runtime';
import { benchTokens } from './speed';

async function main(): Promise<void> {
  const o = JSON.parse(process.argv[2] ?? '{}') as { model: string; prompt: number; generate: number; threads?: number };
  setThreads(o.threads);
  const model = await loadModel(o.model);
  const prompt = benchTokens(o.prompt, model.info.vocab, 12345);
  await model.handle.generate({ prompt, tokens: Math.min(4, o.generate) }).promise; // warm-up: page in the weights
  const r = await model.handle.generate({ prompt, tokens: o.generate }).promise;
  process.stdout.write(
    JSON.stringify({
      prefillTokensPerSecond: o.prompt / r.prefillSeconds,
      decodeTokensPerSecond: r.decodeSteps > 0 ? r.decodeSteps / r.decodeSeconds : null,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      kvCacheBytes: r.cacheBytes,
      prompt: o.prompt,
      generate: o.generate,
    }) + '\n',
  );
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
});
