// Times @huggingface/jinja rendering one chat template: node time-render.mjs REQUEST_JSON ROUNDS
// The request holds {"template": "...", "variables": {...}}. Prints one JSON line:
// {"chars": N, "ms": [each round's milliseconds]}. Used by `bench --tokenizer`.
import { readFileSync } from 'node:fs';
import { Template } from '@huggingface/jinja';

const [requestFile, rounds] = process.argv.slice(2);
const { template, variables } = JSON.parse(readFileSync(requestFile, 'utf8'));
const parsed = new Template(template);
const ms = [];
let chars = 0;
for (let i = 0; i <= Number(rounds); i++) {
  const start = process.hrtime.bigint();
  const text = parsed.render(variables);
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  chars = text.length;
  if (i > 0) ms.push(elapsed); // the first round warms up
}
process.stdout.write(JSON.stringify({ chars, ms }) + '\n');
