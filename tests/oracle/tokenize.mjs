// Hugging Face's tokenizers library (its Rust core) as the tests' oracle.
// Reads a JSON request from the file named by the first argument:
//   {"tokenizer": "path/to/tokenizer.json", "encode": ["text", ...], "decode": [[id, ...], ...]}
// and writes to stdout:
//   {"ids": [[id, ...], ...], "decoded": ["text", ...], "decodedWithSpecial": ["text", ...]}
// Texts are encoded without special tokens added (the engine adds none; templates write them);
// added tokens written in the text are matched, as Hugging Face's encode does.
import { readFileSync } from 'node:fs';
import { Tokenizer } from 'tokenizers';

const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tokenizer = Tokenizer.fromFile(request.tokenizer);
const ids = [];
for (const text of request.encode ?? []) {
  const encoding = await tokenizer.encode(text, null, { addSpecialTokens: false });
  ids.push(encoding.getIds());
}
const decoded = [];
const decodedWithSpecial = [];
for (const sequence of request.decode ?? []) {
  decoded.push(await tokenizer.decode(sequence, true));
  decodedWithSpecial.push(await tokenizer.decode(sequence, false));
}
process.stdout.write(JSON.stringify({ ids, decoded, decodedWithSpecial }));
