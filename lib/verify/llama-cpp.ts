// llama.cpp as an independent runtime, through node-llama-cpp — an optional peer dependency: `verify` and
// `bench` use it when it is installed (in the user's project, or $ENTROPRUNE_LLAMA_PEER, or this repository's
// test/peer) and say what to install when it is not. The scripts that drive it ship with the package
// (scripts/llama-cpp/) and run in child processes: a GGML_ASSERT kills the process, not the caller.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The package root (dist/lib/verify → three up; lib/verify under vitest → two up). */
const packageRoot = path.basename(path.resolve(__dirname, '..', '..')) === 'dist' ? path.resolve(__dirname, '..', '..', '..') : path.resolve(__dirname, '..', '..');

export const INSTALL_HINT = 'node-llama-cpp not installed (npm install node-llama-cpp, an optional peer of entroprune; or set ENTROPRUNE_LLAMA_PEER to a folder holding it)';

/** node-llama-cpp's entry file, found the way Node would from these folders and their parents. */
export function findNodeLlamaCpp(): string | undefined {
  const starts = [process.env.ENTROPRUNE_LLAMA_PEER, process.cwd(), packageRoot, path.join(packageRoot, 'test', 'peer')].filter((d): d is string => !!d);
  for (const start of starts) {
    for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
      const pkg = path.join(dir, 'node_modules', 'node-llama-cpp', 'package.json');
      if (fs.existsSync(pkg)) {
        const json = JSON.parse(fs.readFileSync(pkg, 'utf8')) as { exports?: { '.'?: { import?: string } }; main?: string };
        const entry = path.join(path.dirname(pkg), json.exports?.['.']?.import ?? json.main ?? 'index.js');
        if (fs.existsSync(entry)) return entry;
      }
      if (path.dirname(dir) === dir) break;
    }
  }
  return undefined;
}

/** A shipped driver script and the environment that tells it where node-llama-cpp is; undefined without it. */
export function llamaCppScript(name: 'llama-logits.mjs' | 'llama-speed.mjs'): { script: string; env: NodeJS.ProcessEnv } | undefined {
  const entry = findNodeLlamaCpp();
  const script = path.join(packageRoot, 'scripts', 'llama-cpp', name);
  if (!entry || !fs.existsSync(script)) return undefined;
  return { script, env: { ...process.env, ENTROPRUNE_NODE_LLAMA_CPP: entry } };
}
