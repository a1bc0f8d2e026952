import t from 'tap'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseConfig } from '../src/index.js'
import { peersDir, render, vigilConfig } from '../bench/lib/proxies.js'
import { median, quantile, writeJson } from '../bench/lib/results.js'
import { parseH2load } from '../bench/lib/h2load.js'
import { fleetMarkdownSection, fleetRows, type FleetDrillDoc } from '../bench/lib/fleet-report.js'
import { drillRow, registryRow, timelineSvg, writeReport, type DrillDoc, type RegistryRow } from '../bench/lib/report.js'

t.test('templates: placeholders and one block per server', async (t) => {
  const out = render('listen {{listen}};\n{{#servers}}server {{address}} # {{index}}\n{{/servers}}{{unknown}}', { listen: '127.0.0.1:1' }, ['127.0.0.1:2', '127.0.0.1:3'])
  t.equal(out, 'listen 127.0.0.1:1;\nserver 127.0.0.1:2 # 1\nserver 127.0.0.1:3 # 2\n{{unknown}}')
})

t.test('every vigil fragment in bench/peers/ is a valid vigil config', async (t) => {
  const fragments = (await readdir(peersDir)).filter((f) => f.startsWith('vigil-') && f.endsWith('.json'))
  t.same(fragments.sort(), [
    'vigil-active.json',
    'vigil-both.json',
    'vigil-grpc.json',
    'vigil-h2c.json',
    'vigil-outlier.json',
    'vigil-p2c-classic.json',
    'vigil-p2c.json',
    'vigil-passive.json',
    'vigil-passive1-classic.json',
    'vigil-passive1.json',
    'vigil-throughput.json',
  ])
  for (const f of fragments) {
    const fragment = JSON.parse(await readFile(`${peersDir}${f}`, 'utf8')) as Record<string, unknown>
    const text = JSON.stringify(vigilConfig(8080, 9901, ['127.0.0.1:9001', '127.0.0.1:9002'], fragment))
    t.doesNotThrow(() => parseConfig(text, f), f)
  }
})

t.test('median and quantiles', async (t) => {
  t.equal(median([3, 1, 2]), 2)
  t.equal(median([4, 1, 2, 3]), 2.5)
  t.equal(median([]), 0)
  t.equal(quantile([5, 1, 4, 2, 3], 0.99), 5)
  t.equal(quantile([5, 1, 4, 2, 3], 0.5), 3)
})

const run = {
  proxy: 'vigil-both',
  status: 'ok' as const,
  client: { requests: 100, errors: 1, non2xx: 2, slow: 0, p50: 1, p99: 9 },
  detectMs: 1_500,
  leaked: 3,
  recoverMs: null,
  detected: '1/1',
  faultyShare: 0.05,
  falseEjections: 0,
  events: [
    { at: 1_000, ran: 1_010, done: 1_020, action: 'replace' as const, provider: 'a', mark: 'fault' as const, replacement: 'a2', note: 'SIGHUP; NOT applied' },
    { at: 2_000, ran: 2_000, done: 2_000, action: 'retire' as const, provider: 'a', mark: 'repair' as const },
  ],
  series: { width: 1_000, providers: { a: [10, 0, 0], a2: [0, 10, 12] }, ok: [10, 10, 12], non2xx: [0, 2, 0], errors: [0, 1, 0], slow: [0, 0, 0] },
  duration: 3_000,
  run: '2026-12-01T10:20:30.000Z',
  scale: 0.5,
}

t.test('a drill row reads like the table legend', async (t) => {
  t.same(drillRow(run), ['2026-12-01 10:20 ×0.5', 'vigil-both', '100', '1', '2', '0', '1.0', '9.0', '1.5 s', '3', 'never', '1/1', '5%', '0', '✓ met', 'a→a2: SIGHUP; NOT applied'])
  t.same(drillRow({ proxy: 'caddy', status: 'skipped', note: 'caddy is not installed' }).filter((c) => c !== ''), ['earlier run', 'caddy', 'skipped', 'caddy is not installed'])
  t.equal(drillRow({ ...run, detected: '1/2', falseEjections: 3 })[14], '✗ MISSED: detected 1/2, 3 false ejections', 'a missed target is marked')
  t.equal(drillRow({ ...run, run: '2026-12-01T11:00:00.000Z', scale: 1 })[0], '2026-12-01 11:00', 'full scale says no factor')
})

t.test('timeline chart: one line per provider and the errors, faults and repairs marked', async (t) => {
  const svg = timelineSvg(run.series, run.events, 'rolling / vigil-both')
  t.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
  t.equal(svg.match(/<path /g)?.length, 3, 'a, a2 and client errors')
  t.match(svg, /stroke="#d62728" stroke-dasharray/, 'fault marked')
  t.match(svg, /stroke="#2ca02c" stroke-dasharray/, 'repair marked')
})

const killed: RegistryRow = { run: '2026-12-01T11:43:50.857Z', scale: 0.33, kind: 'zookeeper', rounds: 1, phase: 'killed, not deregistered', status: 'ok', requests: 500, clientErrors: 0, sentToRemoved: 0, changeToApply: [0.1, 3.07], seconds: 3.2, result: 'removed 3.07 s after its kill', missed: [] }

t.test('a registry drill row: one phase, its counts, change → apply quantiles, missed targets marked', async (t) => {
  t.same(registryRow(killed), ['2026-12-01 11:43 ×0.33', 'zookeeper', 'killed, not deregistered', '1', '500', '0', '0', '0.100 s', '3.070 s', '2', '3.2', 'removed 3.07 s after its kill', '✓ met'])
  t.equal(registryRow({ ...killed, clientErrors: 2, sentToRemoved: 1 })[12], '✗ MISSED: 2 client errors, 1 sent to removed addresses', 'errors and requests to removed addresses miss')
  t.equal(registryRow({ ...killed, missed: ['wrong set: 3 servers, 4 providers'] })[12], '✗ MISSED: wrong set: 3 servers, 4 providers', "the phase's own target")
  t.same(registryRow({ ...killed, changeToApply: [], requests: undefined }).slice(4, 10), ['-', '0', '0', '-', '-', '0'], 'nothing measured shows as -')
  const skipped = registryRow({ kind: 'etcd', phase: 'all', status: 'skipped', note: 'etcd is not installed' })
  t.equal(skipped.length, 13)
  t.same(skipped.filter((c) => c !== ''), ['earlier run', 'etcd', 'all', '-', 'skipped', 'etcd is not installed'])
  t.equal(registryRow({ ...killed, status: 'failed', note: 'change not applied within the limit' })[12], '✗ MISSED: phase failed')
})

t.test('the real-fleet drill: one row per phase and registry, sharing judged against the run without it', async (t) => {
  const kill = { phase: 'kill' as const, registry: undefined, shared: false, detection: [2000, 2500, 1800], p50: 2000, max: 2500, failed: 40, requests: 900 }
  const doc: FleetDrillDoc = {
    kind: 'fleet',
    run: '2026-12-01T16:00:00.000Z',
    vigils: 3,
    busy: 40,
    light: 0.5,
    outageSeconds: 30,
    interval: '10s',
    rows: [
      kill,
      { ...kill, registry: 'etcd', shared: true, detection: [500, 800, 400], p50: 500, max: 800, failed: 12 },
      { ...kill, registry: 'zookeeper', shared: true, detection: [2100, null, 2600], p50: 2100, max: NaN, failed: 41 },
      { phase: 'partition', registry: 'etcd', shared: true, partitionedVigilTookItOut: true, othersThatTookItOut: [], othersFailed: 0, othersRequests: 600 },
      { phase: 'registry', registry: 'zookeeper', shared: true, outageSeconds: 30, healthChangesDuringOutage: ['vigil-01:p0:ejected'], failed: 0, requests: 800, fleetSeenAfter: 3 },
    ],
  }
  const rows = fleetRows(doc)
  t.same(rows[0], ['kill', '-', 'off', '3 of 3', '2.00 s', '2.50 s', '40 / 900', 'the baseline', '✓ met'])
  t.same(rows[1]?.slice(-2), ['p50 4.0× sooner than without', '✓ met'])
  t.equal(rows[2]?.[8], '✗ MISSED: 1 never took it out, not sooner than without, more failed requests than without', 'a share that does not beat the baseline misses')
  t.match(rows[3]?.[7], /in rotation at all 2 others; the partitioned vigil took it out/)
  t.equal(rows[3]?.[8], '✓ met')
  t.equal(rows[4]?.[8], '✗ MISSED: 1 health changes', 'a health change during the outage misses')
  t.match(fleetMarkdownSection(doc), /## Real fleet drill/)
})

t.test('the report: self-contained HTML and a markdown summary from every result file', async (t) => {
  const dir = `${await mkdtemp(join(tmpdir(), 'vigil-report-'))}/`
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const older = { ...run, proxy: 'nginx', run: '2026-11-30T08:00:00.000Z', scale: 1, falseEjections: 2 }
  const drill: DrillDoc = { kind: 'drill', scenario: 'rolling', description: 'replace <all>', date: 'd', machine: { cpus: 2, node: 'v20', loadavg: [3, 4.56] }, timing: { before: 1 }, load: { rate: 10, connections: 2, timeout: 5 }, runs: [run, older] }
  await writeJson(`${dir}rolling.json`, drill)
  await writeJson(`${dir}throughput.json`, {
    kind: 'throughput',
    date: 'd',
    run: '2026-12-01T09:00:00.000Z',
    scale: 0.4,
    targets: { throughput: 'vigil >= 0.9x undici', undiciThroughputMet: false, accessLog: 'x', accessLogMet: true, latencyMetAtRate: undefined },
    machine: { cpus: 2, node: 'v20', loadavg: [1, 1, 1] },
    settings: { rounds: 3, duration: 5, connections: 50 },
    summary: [
      { target: 'direct', rps: 1000, p50: 1, p99: 2, errors: 0 },
      { target: 'vigil', rps: 800, p50: 1, p99: 3, errors: 0, cpuUs: 60.25, upstreamCpuUs: 10 },
    ],
    ratios: { vigilOverDirect: 0.8, vigilP99AboveDirect: 1 },
    fixedRate: { rate: 500, summary: [{ target: 'vigil', rps: 499, p50: 1, p99: 2, errors: 0 }], ratios: { vigilP99AboveDirect: 0.5 } },
    notes: ['nginx: not installed, skipped'],
  })
  await writeJson(`${dir}registry.json`, { kind: 'registry', date: 'd', machine: { cpus: 2, node: 'v20', loadavg: [1, 2] }, clients: 16, runs: [killed, { ...killed, kind: 'etcd', run: '2026-11-30T08:00:00.000Z', scale: 1, clientErrors: 1 }] })
  await writeJson(`${dir}h2-throughput.json`, {
    kind: 'h2-throughput',
    date: 'd',
    run: '2026-12-01T16:48:00.000Z',
    settings: { rounds: 3, duration: 5, clients: 10, streams: 10, tool: 'h2load' },
    summary: [{ workload: 'grpc', target: 'vigil', rps: 3857.4, meanMs: 25.76, failed: 0, cpuUs: 168.04, upstreamCpuUs: 90.2 }],
    ratios: [{ workload: 'grpc', vigilOverNginx: 0.4, vigilCpuOverNginx: 3.5 }],
    notes: [],
  })
  await writeFile(`${dir}not-a-result.txt`, 'ignored')
  const html = await readFile(await writeReport(dir), 'utf8')
  t.match(html, /<h2>Throughput/)
  t.match(html, /<h3>rolling<\/h3>/)
  t.match(html, /replace &lt;all&gt;/, 'text is escaped')
  t.match(html, /<svg /)
  t.notMatch(html, /<script|<link|<img|src=|href=/, 'no external assets')
  const md = await readFile(`${dir}SUMMARY.md`, 'utf8')
  t.match(md, /\| vigil \| 800 \| 1\.00 \| 3\.00 \| 0 \| 60\.3 \| 10\.0 \|/, 'CPU per request of the proxy and the upstream')
  t.match(md, /\| direct \| 1000 \| 1\.00 \| 2\.00 \| 0 \| - \| - \|/, 'no CPU figure where none was measured')
  t.match(md, /vigil\/direct 0\.80x/)
  t.match(md, /At a fixed 500 req\/s, paced evenly .* = 0\.50 ms/)
  t.match(md, /\| vigil \| 499 \|/)
  t.match(md, /### rolling/)
  t.match(md, /2 CPUs, load average 3\.0 → 4\.6 over the scenario/)
  t.match(md, /- nginx: not installed, skipped/)
  t.match(md, /Run 2026-12-01 09:00 ×0\.4:/, 'the throughput run and its scale')
  t.match(md, /Targets: \*\*undici throughput ✗ MISSED\*\*; access log ✓ met/, 'missed targets stand out; unmeasured ones are left out')
  t.match(md, /\*\*Rows from 2 runs \(2026-12-01 10:20 ×0\.5; 2026-11-30 08:00\): compare across them with care\.\*\*/, 'mixed runs are said so')
  t.match(md, /\| 2026-11-30 08:00 \| nginx \|.*✗ MISSED: 2 false ejections/)
  t.match(html, /class="missed">undici throughput ✗ MISSED/)
  t.match(html, /<h2>Registry drills/)
  t.match(md, /## Registry drills/)
  t.match(md, /## HTTP\/2 and gRPC throughput/)
  t.match(md, /\| grpc \| vigil \| 3857 \| 25\.76 \| 0 \| 168\.0 \| 90\.2 \|/, 'the HTTP/2 rows with CPU per request')
  t.match(md, /grpc: vigil\/direct req\/s -, vigil\/nginx req\/s 0\.40x, CPU per request vigil\/nginx 3\.50x/)
  t.match(html, /<h2>HTTP\/2 and gRPC throughput/)
  t.match(md, /\| 2026-12-01 11:43 ×0\.33 \| zookeeper \| killed, not deregistered \|.*✓ met \|/, 'registry rows carry their run and scale')
  t.match(md, /\| 2026-11-30 08:00 \| etcd \|.*✗ MISSED: 1 client error \|/, 'a missed registry target is marked')
  t.match(md, /Rows from 2 runs \(2026-12-01 11:43 ×0\.33; 2026-11-30 08:00\)/, 'mixed registry runs are said so')
})

t.test('h2load summaries', async (t) => {
  const out = `finished in 2.00s, 9000.50 req/s, 1.2MB/s
requests: 18010 total, 18010 started, 18001 done, 17990 succeeded, 11 failed, 2 errored, 1 timeout
status codes: 17990 2xx, 0 3xx, 3 4xx, 5 5xx
traffic: 1MB (1) total
                     min         max         mean         sd        +/- sd
time for request:      120us     20.50ms      1.25ms       300us    90.00%
`
  t.same(parseH2load(out), { requests: 18001, rps: 9000.5, ok: 17990, failed: 11, meanMs: 1.25 })
})
