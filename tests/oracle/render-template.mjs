// Hugging Face's Jinja engine for chat templates (@huggingface/jinja) as the tests' oracle.
// Reads a JSON request from the file named by the first argument:
//   {"cases": [{"template": "...", "variables": {...}}, ...]}
// and writes to stdout one result per case: {"text": "..."} or {"error": "..."}.
import { readFileSync } from 'node:fs';
import { Template } from '@huggingface/jinja';

const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const parsed = new Map();
const results = request.cases.map(({ template, variables }) => {
  try {
    if (!parsed.has(template)) parsed.set(template, new Template(template));
    return { text: parsed.get(template).render(variables) };
  } catch (e) {
    return { error: String(e?.message ?? e) };
  }
});
process.stdout.write(JSON.stringify(results));
