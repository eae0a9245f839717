// Reference logits from llama.cpp (via node-llama-cpp 3.21.1), for comparing entroprune's own
// forward pass against it. Run by `verify` (and the tests) in a child process (a GGML_ASSERT kills the process).
//
//   node scripts/llama-cpp/llama-logits.mjs <model.gguf> <tokens.json> <out.bin> [--threads N] [--logprobs]
//
// tokens.json: {"sequences": [[id, ...], ...]}. Each sequence is evaluated from position 0 in a
// cleared sequence state, ids used exactly as given (no BOS added). out.bin: little-endian float32,
// all sequences concatenated, each [T, vocab] row-major; row t = prediction after token t.
// Prints one JSON line: {"vocab", "positions", "seconds", "kind", "maxShiftDeviation"}.
//
// node-llama-cpp exposes no raw logits: its lowest-level per-position output is
// `sequence.controlledEvaluate()` with `generateNext.probabilities`, i.e. llama.cpp's softmax of the
// logits in float32 (greedy sampler, which leaves the logits untouched). log(p) is the logits minus
// an unknown per-row constant. To get raw logits back, the context is created with (private)
// `_embeddings: true`, so after each single-token decode `context._ctx.getEmbedding()` returns
// llama.cpp's final normed hidden state h; the row's constant is then taken from h · output.weight
// (read from the GGUF) and checked: every token must agree to `maxShiftDeviation` (< 1e-3, else
// error). Values come from llama.cpp's log-probs; only the per-row shift comes from the
// projection (used directly for tokens whose probability underflows float32).
// With --logprobs the raw-logit step is skipped and out.bin holds log-softmax values.
// Keep --threads 1 (default): with one token per decode, more threads than idle cores made this
// 10-100x slower on a 2-core machine (ggml's spinning thread barrier), with identical results.
import fs from "node:fs";
import os from "node:os";
import {pathToFileURL} from "node:url";
// node-llama-cpp is an optional peer of entroprune: the caller (lib/verify/llama-cpp.ts) passes where it found it.
const {getLlama, readGgufFileInfo} = await import(process.env.ENTROPRUNE_NODE_LLAMA_CPP ? pathToFileURL(process.env.ENTROPRUNE_NODE_LLAMA_CPP).href : "node-llama-cpp");

const args = process.argv.slice(2);
const flag = (name, fallback) => {
    const i = args.indexOf(name);
    if (i < 0) return fallback;
    const [, value] = args.splice(i, 2);
    return value;
};
const threads = Number(flag("--threads", "1"));
const logprobsOnly = args.includes("--logprobs");
if (logprobsOnly) args.splice(args.indexOf("--logprobs"), 1);
const [modelPath, tokensPath, outPath] = args;
if (!modelPath || !tokensPath || !outPath || !(threads >= 1))
    throw new Error("usage: llama-logits.mjs <model.gguf> <tokens.json> <out.bin> [--threads N] [--logprobs]");
if (os.endianness() !== "LE") throw new Error("little-endian host required");

const {sequences} = JSON.parse(fs.readFileSync(tokensPath, "utf8"));
if (!Array.isArray(sequences) || sequences.some((s) => !Array.isArray(s) || s.length === 0))
    throw new Error("tokens.json must hold {\"sequences\": [[id, ...], ...]} with non-empty sequences");

// F16 / BF16 / Q8_0 / F32 matrix [rows, cols] from the GGUF as Float32Array rows.
function halfToFloat(h) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 31) return m ? NaN : s * Infinity;
    return s * (1 + m / 1024) * 2 ** (e - 15);
}
async function readOutputMatrix(path) {
    const info = await readGgufFileInfo(path, {readTensorInfo: true});
    const t = info.fullTensorInfo.find((x) => x.name === "output.weight")
        ?? info.fullTensorInfo.find((x) => x.name === "token_embd.weight");
    if (t == null || (info.splicedParts ?? 1) > 1 || (t.filePart ?? 1) !== 1)
        throw new Error("no output matrix found in a single-file GGUF (use --logprobs)");
    const [cols, rows] = t.dimensions.map(Number), n = cols * rows;
    const bytesPer = {0: 4, 1: 2, 30: 2, 8: 34 / 32}[t.ggmlType];
    if (bytesPer == null) throw new Error(`output matrix type ${t.ggmlType} unsupported (use --logprobs)`);
    const buf = Buffer.alloc(n * bytesPer);
    const fd = fs.openSync(path, "r");
    fs.readSync(fd, buf, 0, buf.length, Number(t.fileOffset));
    fs.closeSync(fd);
    const w = new Float32Array(n);
    for (let i = 0; i < n; i++) {
        if (t.ggmlType === 0) w[i] = buf.readFloatLE(i * 4);
        else if (t.ggmlType === 1) w[i] = halfToFloat(buf.readUInt16LE(i * 2));
        else if (t.ggmlType === 30) w[i] = new Float32Array(new Uint32Array([buf.readUInt16LE(i * 2) << 16]).buffer)[0];
        else { // Q8_0: blocks of {f16 scale, 32 x int8}
            const block = Math.floor(i / 32) * 34;
            w[i] = halfToFloat(buf.readUInt16LE(block)) * buf.readInt8(block + 2 + (i % 32));
        }
    }
    return {w, rows, cols};
}

const started = performance.now();
const llama = await getLlama({
    gpu: false, build: "never", maxThreads: threads, logLevel: "error",
    logger: (level, message) => process.stderr.write(`[llama ${level}] ${message}\n`)
});
const model = await llama.loadModel({modelPath});
const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length; // re-checked against llama.cpp below
const maxLen = Math.max(...sequences.map((s) => s.length));
for (const s of sequences)
    for (const id of s)
        if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`token id ${id} outside [0, ${vocab})`);
const projection = logprobsOnly ? null : await readOutputMatrix(modelPath);
if (projection && projection.rows !== vocab) throw new Error(`output matrix has ${projection.rows} rows, vocab is ${vocab}`);

const context = await model.createContext({
    contextSize: maxLen + 1, batchSize: 1, sequences: 1, flashAttention: false,
    threads: {ideal: threads, min: threads},
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    _embeddings: !logprobsOnly
});
if (context.contextSize < maxLen) throw new Error("context too small (would context-shift)");
const sequence = context.getSequence();

const total = sequences.reduce((a, s) => a + s.length, 0);
const out = new Float32Array(total * vocab);
const proj = new Float64Array(vocab);
let row = 0, maxShiftDeviation = 0;
for (const ids of sequences) {
    await sequence.clearHistory();
    for (const id of ids) {
        // One token per decode: the logits of this position, and (with _embeddings) its hidden state.
        const [res] = await sequence.controlledEvaluate([[id, {generateNext: {probabilities: true}}]]);
        const probs = res?.next?.probabilities;
        if (probs == null || probs.size !== vocab) throw new Error(`no full distribution at position ${row}`);
        const dst = out.subarray(row * vocab, (row + 1) * vocab);
        for (const [tok, p] of probs) dst[tok] = Math.log(p);
        if (projection) {
            const h = context._ctx.getEmbedding(1);
            if (h.length !== projection.cols) throw new Error(`hidden size ${h.length} != ${projection.cols}`);
            let shift = 0, count = 0;
            for (let v = 0; v < vocab; v++) {
                let acc = 0;
                for (let k = 0, o = v * projection.cols; k < projection.cols; k++) acc += projection.w[o + k] * h[k];
                proj[v] = acc;
                if (dst[v] > -60) { shift += acc - dst[v]; count++; } // p > ~1e-26: full float32 precision
            }
            shift /= count;
            for (let v = 0; v < vocab; v++) {
                if (dst[v] > -60) maxShiftDeviation = Math.max(maxShiftDeviation, Math.abs(proj[v] - dst[v] - shift));
                dst[v] = dst[v] > -60 ? dst[v] + shift : proj[v];
            }
        }
        row++;
    }
}
if (maxShiftDeviation > 1e-3)
    throw new Error(`hidden state x output matrix disagrees with llama.cpp's logits by ${maxShiftDeviation}`);
fs.writeFileSync(outPath, new Uint8Array(out.buffer));
await context.dispose();
await model.dispose();
console.log(JSON.stringify({
    vocab, positions: total, seconds: (performance.now() - started) / 1000,
    kind: projection ? "logits" : "logprobs", maxShiftDeviation
}));
