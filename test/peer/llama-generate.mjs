// Greedy text generation with llama.cpp (node-llama-cpp 3.21.1), for showing what a pruned GGUF writes.
// Test/inspection only.   node test/peer/llama-generate.mjs <model.gguf> "<prompt>" [maxTokens]
import {getLlama, LlamaCompletion} from "node-llama-cpp";

const [modelPath, prompt = "Once upon a time", max = "60"] = process.argv.slice(2);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath});
const context = await model.createContext({contextSize: 512, threads: 1});
const completion = new LlamaCompletion({contextSequence: context.getSequence()});
const text = await completion.generateCompletion(prompt, {maxTokens: Number(max), temperature: 0});
console.log(JSON.stringify({prompt, text}));
await llama.dispose();
