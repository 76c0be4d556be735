# Renders chat conversations with the models' real Jinja chat templates, the way Hugging Face
# transformers' apply_chat_template does (jinja2 ImmutableSandboxedEnvironment, trim_blocks,
# lstrip_blocks). The reference for tests/unit/chat_template_test.cpp, driven by chat_reference.mjs.
#
#   python3 render_chat.py < {"template": ..., "bos_token": ..., "eos_token": ..., "cases": [...]}
#   → a JSON array of rendered strings, one per case
import json
import sys

from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise ValueError(message)


def main():
    req = json.load(sys.stdin)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    template = env.from_string(req["template"])
    out = []
    for case in req["cases"]:
        kwargs = {"messages": case["messages"],
                  "add_generation_prompt": case.get("add_generation_prompt", False),
                  "bos_token": req["bos_token"], "eos_token": req["eos_token"]}
        if "enable_thinking" in case:
            kwargs["enable_thinking"] = case["enable_thinking"]
        out.append(template.render(**kwargs))
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
