// Times Hugging Face's tokenizers encoding one text: node time-encode.mjs TOKENIZER_JSON TEXT_FILE ROUNDS
// Prints one JSON line: {"tokens": N, "ms": [each round's milliseconds]}. Used by `bench --tokenizer`.
import { readFileSync } from 'node:fs';
import { Tokenizer } from 'tokenizers';

const [tokenizerJson, textFile, rounds] = process.argv.slice(2);
const tokenizer = Tokenizer.fromFile(tokenizerJson);
const text = readFileSync(textFile, 'utf8');
const ms = [];
let tokens = 0;
for (let i = 0; i <= Number(rounds); i++) {
  const start = process.hrtime.bigint();
  const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  tokens = encoding.getIds().length;
  if (i > 0) ms.push(elapsed); // the first round warms up
}
process.stdout.write(JSON.stringify({ tokens, ms }) + '\n');
