// Zero-shot task files → documents in one shape, with the prompts lm-eval-harness uses for each task.
// A multiple-choice document is a list of (context, continuation) requests, one per choice; the choice
// texts (without the leading space) are kept for acc_norm's length normalisation. File formats are the
// llm-foundry JSONL files and klosax's HellaSwag text (see the data README).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { EntropruneError } from '../../util/errors';

export interface ChoiceDoc {
  kind: 'choice';
  /** one request per choice: score `continuation` given `context` */
  requests: { context: string; continuation: string }[];
  /** the choice strings acc_norm divides by (their length in characters) */
  choiceTexts: string[];
  gold: number;
}

export interface LastWordDoc {
  kind: 'last-word';
  context: string;
  continuation: string;
}

export type TaskDoc = ChoiceDoc | LastWordDoc;

export interface TaskSpec {
  name: string;
  /** file(s) under the tasks directory */
  files: string[];
  /** one file that may stand for all of `files` (their concatenation) */
  whole?: string;
  /** metrics reported: acc_norm only where it means something (not when every choice has the same continuation) */
  metrics: ('acc' | 'acc_norm' | 'ppl')[];
  parse(lines: string[], file: string): TaskDoc[];
}

type Row = Record<string, unknown>;

function jsonRows(lines: string[], file: string): Row[] {
  const rows: Row[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      rows.push(JSON.parse(line) as Row);
    } catch (e) {
      throw new EntropruneError('EP_FORMAT', `${file}:${i + 1}: not valid JSON (${(e as Error).message})`, file);
    }
  });
  return rows;
}

function field<T>(row: Row, key: string, check: (v: unknown) => v is T, file: string, index: number): T {
  const v = row[key];
  if (!check(v)) throw new EntropruneError('EP_FORMAT', `${file}: row ${index + 1} has no valid "${key}" field`, file);
  return v;
}
const isString = (v: unknown): v is string => typeof v === 'string';
// An empty answer would be scored as a valid choice with a zero-length continuation (and acc_norm would
// divide by zero characters): every choice needs text.
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.length >= 2 && v.every((x) => isString(x) && x.trim() !== '');
const isIndex = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;

/** query/choices/gold rows; `prompt` turns the query into lm-eval's context. */
function queryChoices(prompt: (query: string) => string) {
  return (lines: string[], file: string): TaskDoc[] =>
    jsonRows(lines, file).map((row, i) => {
      const query = field(row, 'query', isString, file, i);
      const choices = field(row, 'choices', isStrings, file, i);
      const gold = field(row, 'gold', isIndex, file, i);
      if (gold >= choices.length) throw new EntropruneError('EP_FORMAT', `${file}: row ${i + 1}: gold ${gold} but ${choices.length} choices`, file);
      const context = prompt(query);
      return { kind: 'choice', requests: choices.map((c) => ({ context, continuation: ' ' + c })), choiceTexts: choices, gold };
    });
}

export const TASKS: Record<string, TaskSpec> = {
  piqa: {
    name: 'piqa',
    files: ['piqa.jsonl'],
    metrics: ['acc', 'acc_norm'],
    // "Question: <goal>\n" + "Answer:"  (lm-eval: "Question: {goal}\nAnswer:")
    parse: queryChoices((q) => q + 'Answer:'),
  },
  arc_easy: {
    name: 'arc_easy',
    files: ['arc_easy.jsonl'],
    metrics: ['acc', 'acc_norm'],
    parse: queryChoices((q) => q + '\nAnswer:'),
  },
  arc_challenge: {
    name: 'arc_challenge',
    files: ['arc_challenge.jsonl'],
    metrics: ['acc', 'acc_norm'],
    parse: queryChoices((q) => q + '\nAnswer:'),
  },
  openbookqa: {
    name: 'openbookqa',
    files: ['openbook_qa.jsonl'],
    metrics: ['acc', 'acc_norm'],
    parse: queryChoices((q) => q), // lm-eval: the question stem alone
  },
  boolq: {
    name: 'boolq',
    files: ['boolq.jsonl'],
    metrics: ['acc'],
    // "Passage: …\nQuestion: …?" + "\nAnswer:"; choices no / yes
    parse: queryChoices((q) => q + '\nAnswer:'),
  },
  winogrande: {
    name: 'winogrande',
    files: ['winogrande.jsonl'],
    metrics: ['acc'],
    // lm-eval "partial" scoring: the same continuation after each filled-in prefix.
    parse: (lines, file) =>
      jsonRows(lines, file).map((row, i) => {
        const contexts = field(row, 'context_options', isStrings, file, i);
        const continuation = ' ' + field(row, 'continuation', isString, file, i).trim();
        const gold = field(row, 'gold', isIndex, file, i);
        if (gold >= contexts.length) throw new EntropruneError('EP_FORMAT', `${file}: row ${i + 1}: gold ${gold} but ${contexts.length} options`, file);
        return { kind: 'choice', requests: contexts.map((context) => ({ context, continuation })), choiceTexts: contexts.map(() => continuation), gold };
      }),
  },
  hellaswag: {
    name: 'hellaswag',
    files: ['hellaswag/hellaswag_val_full.part1.txt', 'hellaswag/hellaswag_val_full.part2.txt', 'hellaswag/hellaswag_val_full.part3.txt'],
    whole: 'hellaswag/hellaswag_val_full.txt',
    metrics: ['acc', 'acc_norm'],
    // Six lines per task: "label: context", gold index, four endings.
    parse: (lines, file) => {
      const body = lines.length > 0 && lines[lines.length - 1] === '' ? lines.slice(0, -1) : lines;
      if (body.length % 6 !== 0) throw new EntropruneError('EP_FORMAT', `${file}: ${body.length} lines is not a whole number of 6-line HellaSwag tasks`, file);
      const docs: TaskDoc[] = [];
      for (let i = 0; i < body.length; i += 6) {
        const gold = Number(body[i + 1]);
        if (!Number.isInteger(gold) || gold < 0 || gold > 3) throw new EntropruneError('EP_FORMAT', `${file}:${i + 2}: gold label "${body[i + 1]}" is not 0–3`, file);
        const endings = body.slice(i + 2, i + 6);
        docs.push({ kind: 'choice', requests: endings.map((e) => ({ context: body[i], continuation: ' ' + e })), choiceTexts: endings, gold });
      }
      return docs;
    },
  },
  lambada: {
    name: 'lambada',
    files: ['lambada_openai.jsonl'],
    metrics: ['acc', 'ppl'],
    parse: (lines, file) =>
      jsonRows(lines, file).map((row, i) => ({
        kind: 'last-word',
        context: field(row, 'context', isString, file, i).replace(/\s+$/, ''),
        continuation: ' ' + field(row, 'continuation', isString, file, i).trim(),
      })),
  },
};

/** The paper's five, in its table order. */
export const PAPER_TASKS = ['piqa', 'hellaswag', 'winogrande', 'arc_easy', 'arc_challenge'];

export function taskSpec(name: string): TaskSpec {
  const spec = TASKS[name];
  if (!spec) throw new EntropruneError('EP_INVALID_ARGUMENT', `unknown task "${name}" (known: ${Object.keys(TASKS).join(', ')})`);
  return spec;
}

/** Read every document of a task from `dir` (the shared data's tasks/ folder or a copy with the same names). */
export function loadTaskDocs(spec: TaskSpec, dir: string): TaskDoc[] {
  const docs: TaskDoc[] = [];
  const files = spec.whole && fs.existsSync(path.join(dir, spec.whole)) ? [spec.whole] : spec.files;
  for (const rel of files) {
    const file = path.join(dir, rel);
    if (!fs.existsSync(file))
      throw new EntropruneError(
        'EP_IO',
        `${file}: task file for "${spec.name}" not found (pass --tasks-dir or set ENTROPRUNE_TASKS_DIR to the folder holding ${spec.whole ?? spec.files[0]}; ` +
          'the README\'s "Zero-shot task files" gives the format and where to get them)',
        file,
      );
    docs.push(...spec.parse(fs.readFileSync(file, 'utf8').split('\n'), file));
  }
  if (docs.length === 0) throw new EntropruneError('EP_FORMAT', `${path.join(dir, spec.files[0])}: no documents`, path.join(dir, spec.files[0]));
  return docs;
}
