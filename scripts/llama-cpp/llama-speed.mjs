// Prefill and decode speed of llama.cpp (node-llama-cpp 3.21.1) on one GGUF, for `entroprune bench`.
// Run in a child process so its peak memory is its own.
//
//   node llama-speed.mjs <model.gguf> --prompt P --generate G --threads K
//
// A prompt of P deterministic ids in [3, vocab) is evaluated in one batch (logits for its last token
// only), then G − 1 single-token decode steps follow, each feeding back the token llama.cpp picked.
// One untimed warm-up round first. Prints one JSON line:
// {"prefillTokensPerSecond", "decodeTokensPerSecond", "peakRssBytes", "prompt", "generate", "threads"}.
import {pathToFileURL} from "node:url";
// node-llama-cpp is an optional peer of entroprune: the caller (lib/verify/llama-cpp.ts) passes where it found it.
const {getLlama} = await import(process.env.ENTROPRUNE_NODE_LLAMA_CPP ? pathToFileURL(process.env.ENTROPRUNE_NODE_LLAMA_CPP).href : "node-llama-cpp");

const args = process.argv.slice(2);
const flag = (name) => {
    const i = args.indexOf(name);
    return i < 0 ? undefined : Number(args[i + 1]);
};
const modelPath = args[0];
const prompt = flag("--prompt"), generate = flag("--generate"), threads = flag("--threads");
if (!modelPath || ![prompt, generate, threads].every((n) => Number.isInteger(n) && n >= 1))
    throw new Error("usage: llama-speed.mjs <model.gguf> --prompt P --generate G --threads K");

const llama = await getLlama({gpu: false, build: "never", maxThreads: threads, logLevel: "error",
    logger: (level, message) => process.stderr.write(`[llama ${level}] ${message}\n`)});
const model = await llama.loadModel({modelPath});
const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const context = await model.createContext({contextSize: prompt + generate + 1, batchSize: prompt, sequences: 1,
    flashAttention: false, threads: {ideal: threads, min: threads}});
const sequence = context.getSequence();
let state = 12345;
const ids = Array.from({length: prompt}, () => 3 + ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 8) % (vocab - 3));

async function round() {
    await sequence.clearHistory();
    const input = ids.slice(0, -1);
    input.push([ids.at(-1), {generateNext: {token: true}}]);
    const t0 = performance.now();
    let next = (await sequence.controlledEvaluate(input)).at(-1).next.token;
    const t1 = performance.now();
    for (let i = 1; i < generate; i++)
        next = (await sequence.controlledEvaluate([[next, {generateNext: {token: true}}]])).at(-1).next.token;
    const t2 = performance.now();
    return {prefill: (t1 - t0) / 1000, decode: (t2 - t1) / 1000};
}

await round(); // warm-up
const r = await round();
await context.dispose();
await model.dispose();
console.log(JSON.stringify({
    prefillTokensPerSecond: prompt / r.prefill,
    decodeTokensPerSecond: generate > 1 ? (generate - 1) / r.decode : null,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    prompt, generate, threads
}));
