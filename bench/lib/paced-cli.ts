// `node dist/bench/lib/paced-cli.js URL RATE SECONDS CONNECTIONS`: the even load of paced.ts in a process of its
// own (side-by-side.ts runs one per target, so targets measured at once do not share a load generator); prints
// its summary as one JSON line.
import { runPaced } from './paced.js'

const [url, rate, seconds, connections] = process.argv.slice(2)
if (url === undefined || rate === undefined || seconds === undefined || connections === undefined) {
  process.stderr.write('usage: paced-cli URL RATE SECONDS CONNECTIONS\n')
  process.exit(2)
}
const summary = await runPaced({ url, rate: Number(rate), duration: Number(seconds), connections: Number(connections) })
process.stdout.write(`${JSON.stringify(summary)}\n`)
