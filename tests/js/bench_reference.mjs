// Times the reference JavaScript tokenizers on a corpus (for bench/bench_tokenizer.cpp).
//
//   node bench_reference.mjs CORPUS.jsonl [PASSES]
//
// Prints one JSON object: per model, load seconds (excluded from the rates), MB/s of the first
// pass (cold caches) and of the best of PASSES passes, and the token count, all single-threaded.
import { readFileSync } from "node:fs";
import { MODELS, readCorpus } from "./models.mjs";

const [corpusPath, passesArg] = process.argv.slice(2);
const passes = Number(passesArg ?? 3);
const docs = readCorpus(readFileSync(corpusPath, "utf8"));
const bytes = docs.reduce((s, d) => s + Buffer.byteLength(d, "utf8"), 0);
const result = { bytes, docs: docs.length, models: {} };
for (const [name, m] of Object.entries(MODELS)) {
  let t = process.hrtime.bigint();
  const tok = m.load();
  const load_s = Number(process.hrtime.bigint() - t) / 1e9;
  const rates = [];
  let tokens = 0;
  for (let p = 0; p < passes; ++p) {
    tokens = 0;
    t = process.hrtime.bigint();
    for (const d of docs) tokens += tok.encode(d, { add_special_tokens: false }).length;
    const s = Number(process.hrtime.bigint() - t) / 1e9;
    rates.push(bytes / 1e6 / s);
  }
  result.models[name] = { load_s, first_mb_s: rates[0], best_mb_s: Math.max(...rates), tokens };
}
console.log(JSON.stringify(result));
