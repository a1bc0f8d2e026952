// `npm run bench:keep`: the deliberate step that makes run output part of the repository. Copies the result files
// of bench/out/ (what `npm run bench` and `npm run drill` wrote) over those in bench/results/ and rewrites the
// committed report from them; then `git add bench/results` and commit with the command lines of the runs.
import { copyFile, readdir } from 'node:fs/promises'
import { keptDir, resultsDir } from './lib/results.js'
import { writeReport } from './lib/report.js'

const files = (await readdir(resultsDir).catch(() => [] as string[])).filter((f) => f.endsWith('.json'))
if (files.length === 0) {
  process.stderr.write(`bench:keep: nothing in ${resultsDir}; run npm run bench or npm run drill first\n`)
  process.exit(1)
}
for (const f of files) await copyFile(`${resultsDir}${f}`, `${keptDir}${f}`)
const report = await writeReport(keptDir)
process.stdout.write(`kept ${files.join(', ')} in ${keptDir}\nreport: ${report}\nnext: git add bench/results && git commit\n`)
