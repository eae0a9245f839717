// Prompt-processing (prefill) throughput of llama.cpp (via node-llama-cpp 3.21.1), as the baseline
// entroprune's speed is compared against. Test-only; run it in a child process.
//
//   node test/peer/llama-bench.mjs <model.gguf> --tokens N --seq-len T --threads K [--repeats R]
//
// Evaluates ceil(N/T) sequences of T deterministic pseudo-random ids in [3, vocab), each from a
// cleared sequence state, each in one batch (batchSize = T) with logits only for the last token
// (llama.cpp's prompt processing; greedy pick of the next token). Context: flash attention off,
// default (F16) KV cache. One warm-up pass, then the best of R timed passes (default 3).
// Prints one JSON line: {"tokensPerSecond", "tokens", "seqLen", "threads", "seconds"}.
import {getLlama} from "node-llama-cpp";

const args = process.argv.slice(2);
const flag = (name, fallback) => {
    const i = args.indexOf(name);
    return i < 0 ? fallback : Number(args[i + 1]);
};
const modelPath = args[0];
const tokens = flag("--tokens"), seqLen = flag("--seq-len"), threads = flag("--threads"), repeats = flag("--repeats", 3);
if (!modelPath || modelPath.startsWith("--") || ![tokens, seqLen, threads, repeats].every((n) => Number.isInteger(n) && n >= 1))
    throw new Error("usage: llama-bench.mjs <model.gguf> --tokens N --seq-len T --threads K [--repeats R]");

const llama = await getLlama({
    gpu: false, build: "never", maxThreads: threads, logLevel: "error",
    logger: (level, message) => process.stderr.write(`[llama ${level}] ${message}\n`)
});
const model = await llama.loadModel({modelPath});
const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const context = await model.createContext({
    contextSize: seqLen + 1, batchSize: seqLen, sequences: 1, flashAttention: false,
    threads: {ideal: threads, min: threads}
});
const sequence = context.getSequence();

// Deterministic ids (LCG), the same on every pass.
let state = 12345;
const nextId = () => 3 + ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 8) % (vocab - 3);
const batches = Array.from({length: Math.ceil(tokens / seqLen)}, () => Array.from({length: seqLen}, nextId));

async function pass() {
    const start = performance.now();
    for (const ids of batches) {
        await sequence.clearHistory();
        const input = ids.slice(0, -1);
        input.push([ids.at(-1), {generateNext: {token: true}}]); // logits for the last token only
        const res = await sequence.controlledEvaluate(input);
        if (res.at(-1)?.next?.token == null) throw new Error("no output for the last token");
    }
    return (performance.now() - start) / 1000;
}

await pass(); // warm-up
let best = Infinity;
for (let r = 0; r < repeats; r++) best = Math.min(best, await pass());
const evaluated = batches.length * seqLen;
await context.dispose();
await model.dispose();
console.log(JSON.stringify({
    tokensPerSecond: evaluated / best, tokens: evaluated, seqLen, threads, seconds: best
}));
