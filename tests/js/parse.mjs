// Parse conversation files with an independent YAML parser and print
// {"<path>": [messages...] | {"error": "..."}} as JSON on stdout.
// Under node it uses eemeli/yaml (YAML 1.2 core schema); under bun it uses
// Bun.YAML.parse, the parser of the reference implementation.
import { readFileSync } from "node:fs";

const paths = readFileSync(0, "utf8").split("\n").filter(Boolean);
const out = {};
let parseWithYaml = null;
if (typeof Bun === "undefined") {
  const YAML = await import("yaml");
  parseWithYaml = (text) => {
    const docs = YAML.parseAllDocuments(text, { version: "1.2", schema: "core", uniqueKeys: true });
    const values = [];
    for (const doc of docs) {
      if (doc.errors.length) throw new Error(doc.errors[0].message);
      values.push(doc.toJS({ maxAliasCount: -1 }));
    }
    return values;
  };
}
for (const path of paths) {
  const text = readFileSync(path, "utf8");
  try {
    let messages;
    if (parseWithYaml) {
      const docs = parseWithYaml(text).filter((d) => d !== null && d !== undefined);
      messages = docs.length === 1 && Array.isArray(docs[0]) ? docs[0] : docs;
    } else {
      const parsed = Bun.YAML.parse(text);
      messages = parsed === null || parsed === undefined ? [] : Array.isArray(parsed) ? parsed : [parsed];
      if (messages.length && messages.every((m) => Array.isArray(m))) messages = messages.flat();
    }
    out[path] = messages;
  } catch (e) {
    out[path] = { error: String(e && e.message ? e.message : e) };
  }
}
process.stdout.write(JSON.stringify(out));
