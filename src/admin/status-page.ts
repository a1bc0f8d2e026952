// The html status page: what an operator looks at during an incident. One section per upstream; per server the
// columns scanned first (state and why, traffic with a small chart, failures, latency, check), the rest one click
// away; the reason for every server out of rotation in words; the last transitions with their evidence; a
// failed reload as a banner with its reason. The json, csv and prometheus forms (status.ts) stay Tengine's.
import type { ServerStatus } from './status.js'
import type { WorkersStatus } from '../workers/primary.js'
import type { SourceStatus } from '../discovery/registries.js'
import type { FleetStatus } from '../fleet/fleet.js'
import type { LastReload } from '../update/reloader.js'
import type { Config } from '../config/schema.js'
import type { Upstream } from '../upstream/upstream.js'
import { SAMPLE_EVERY, SAMPLES, type Bar, type StatusHistory, type Transition } from './history.js'

export interface StatusPage {
  rows: readonly ServerStatus[]
  generation: number
  /** Seconds between refreshes. */
  refresh: number
  reload: LastReload | undefined
  history: StatusHistory
  upstreams: ReadonlyMap<string, Upstream>
  config: Config
  now: number
  /** Registry sources (ZooKeeper, etcd). */
  discovery: readonly SourceStatus[]
  /** With `fleet`: registration and shared observations. */
  fleet?: FleetStatus | undefined
  /** A cluster's workers (`workers`); undefined for one process. */
  workers?: WorkersStatus | undefined
}

/** Transitions shown per upstream; older ones are in the json log lines. */
const TRANSITIONS_SHOWN = 8

const esc = (v: unknown): string => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

/** "12 s", "3 min", "2 h 5 min": a duration an operator reads at a glance. */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 120) return `${s} s`
  const m = Math.floor(s / 60)
  if (m < 120) return `${m} min`
  return `${Math.floor(m / 60)} h ${m % 60} min`
}

const ago = (now: number, at: number | string | null | undefined): string | undefined => {
  if (at === null || at === undefined) return undefined
  const t = typeof at === 'string' ? Date.parse(at) : at
  return Number.isNaN(t) ? undefined : `${span(now - t)} ago`
}

const count = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`

/** Checks this vigil sends, per second over the last minute. */
const probes = (perSecond: number): string => `${perSecond < 0.1 && perSecond > 0 ? perSecond.toFixed(3) : perSecond.toFixed(2)} probes/s`

/** Why a server is out of rotation (or what is worth knowing about it while in), in words. */
export function reasonOf(r: ServerStatus, page: Pick<StatusPage, 'history' | 'now'> & { configDown: boolean }): string {
  const { history, now } = page
  const since = (source: Transition['source'], events?: string[]): string => {
    const when = ago(now, history.last(r.upstream, r.name, source, events)?.at)
    return when === undefined ? '' : ` ${when}`
  }
  if (page.configDown) return 'down in the config ("down": true)'
  if (r.operator === 'disabled') return `disabled by the operator${since('operator', ['disabled'])}`
  if (r.operator === 'draining') return `draining since${since('operator', ['draining']) || ' the operator asked'}: no new requests, ${r.inflight} in flight`
  if (r.check === 'down') {
    if (r.lastCheck === null) return `waiting for its first ${r.type} check (defaultDown)`
    const last = `last ${r.lastCheck.result === 'success' ? 'passed' : `failed: ${r.lastCheck.reason}`} ${ago(now, r.lastCheck.at) ?? ''}`
    const down = r.lastChange === null ? 'down by check' : `down by ${r.type} check for ${span(now - Date.parse(r.lastChange))}`
    const rising = r.rise > 0 ? `, ${r.rise} passing so far` : `, ${count(r.fall, 'failure')} in a row`
    return `${down}${rising}; ${last}`.trimEnd()
  }
  if (r.passive === 'ejected' || r.passive === 'trial') {
    const e = history.last(r.upstream, r.name, 'passive', ['ejected'])
    const failures = typeof e?.evidence?.['failures'] === 'number' ? `${e.evidence['failures']} ` : ''
    const what = `${failures}${r.ejectionFailure ?? 'failures'}${r.ejectionReason === null ? '' : ` (${r.ejectionReason})`}`
    const when = e === undefined ? 'ejected' : `ejected ${span(now - e.at)} ago`
    if (r.passive === 'trial') return `${when} for ${what}; trial request due: the next request decides`
    const until = r.ejectedUntil === null ? '' : `, trial in ${span(Date.parse(r.ejectedUntil) - now)}`
    return `${when} for ${what}${until}`
  }
  if (r.passive === 'suspect') {
    const e = history.last(r.upstream, r.name, 'passive', ['suspect'])
    const waiting = typeof e?.evidence?.['waiting'] === 'number' ? `: a request waiting ${Math.round(e.evidence['waiting'])} ms` : ''
    return `suspected of a stall${waiting}, far longer than the group takes`
  }
  if (r.status === 'down') return 'not eligible'
  if (r.subset === 'standby') return "standby: outside this vigil's subset, no traffic from it (checked only while down)"
  if (r.subset === 'replacement') return 'replacing subset members that are out'
  if (r.effectiveWeight < r.weight) return `slow start: weight ${r.effectiveWeight} of ${r.weight}`
  if (r.check === 'unknown') return `first ${r.type} check running`
  return ''
}

/** Requests (blue) and failures (red) per interval over the last minutes, as bars on one scale. */
function chart(bars: readonly Bar[]): string {
  const width = 5
  const height = 22
  const slots = SAMPLES
  const shown = bars.slice(-slots)
  const max = Math.max(1, ...shown.map((b) => b.requests))
  const x0 = (slots - shown.length) * width
  const rects = shown
    .map((b, i) => {
      const x = x0 + i * width
      const h = b.requests === 0 ? 0 : Math.max(1, Math.round((b.requests / max) * height))
      const f = b.failures === 0 ? 0 : Math.max(1, Math.round((Math.min(b.failures, b.requests || b.failures) / max) * height))
      return `${h > 0 ? `<rect x="${x}" y="${height - h}" width="${width - 1}" height="${h}" class="rq"/>` : ''}${f > 0 ? `<rect x="${x}" y="${height - f}" width="${width - 1}" height="${f}" class="fl"/>` : ''}`
    })
    .join('')
  const total = shown.reduce((a, b) => a + b.requests, 0)
  const failed = shown.reduce((a, b) => a + b.failures, 0)
  const label = `${total} requests, ${failed} failures in the last ${span(shown.length * SAMPLE_EVERY)} (bars of ${span(SAMPLE_EVERY)})`
  return `<svg class="chart" width="${slots * width}" height="${height}" viewBox="0 0 ${slots * width} ${height}" role="img" aria-label="${esc(label)}"><title>${esc(label)}</title><rect x="0" y="${height - 1}" width="${slots * width}" height="1" class="axis"/>${rects}</svg>`
}

/** The evidence of a transition as short key=value pairs. */
function evidence(e: Record<string, unknown> | undefined): string {
  if (e === undefined) return ''
  return Object.entries(e)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' ')
}

function serverRow(r: ServerStatus, page: StatusPage): string {
  const peer = page.upstreams.get(r.upstream)?.find(r.name)
  const configDown = peer?.configDown ?? false
  const why = reasonOf(r, { ...page, configDown })
  const http2 = r.protocol !== 'http1'
  const tags = [http2 ? r.protocol : '', r.backup ? 'backup' : '', r.subset === 'member' || r.subset === null ? '' : r.subset, r.weight !== 1 ? `weight ${r.weight}` : '', r.maxConns === null ? '' : `max ${r.maxConns}`].filter((t) => t !== '')
  const failurePct = r.requests === 0 ? '' : ` (${((r.failures / r.requests) * 100).toFixed(r.failures === 0 ? 0 : 1)}%)`
  const check =
    r.check === 'none'
      ? '<span class="muted">no check</span>'
      : `<span class="pill ${r.check}">${r.check}</span> ${esc(r.type)}${
          r.lastCheck === null ? '' : `<br><span class="muted">${esc(r.lastCheck.result === 'success' ? 'passed' : r.lastCheck.reason)} · ${r.lastCheck.latencyMs} ms · ${esc(ago(page.now, r.lastCheck.at) ?? '')}</span>`
        }<br><span class="muted probes">${esc(probes(r.probeRate))}</span>`
  const more: [string, unknown][] = [
    ['operator', r.operator],
    ['passive', r.passive],
    ['weight / effective', `${r.weight} / ${r.effectiveWeight}`],
    ['max conns', r.maxConns ?? 'no limit'],
    ['protocol', r.protocol],
    ...(http2 ? ([['streams open', r.streams], ['GOAWAYs', r.goaways]] as [string, unknown][]) : []),
    ['gRPC calls', `${r.grpc.ok} OK, ${count(r.grpc.error, 'error')}`],
    ['ejections', r.ejections],
    ['stalls', r.stalls],
    ['ejection', r.ejectionReason === null ? '—' : `${r.ejectionReason} (${r.ejectionFailure ?? '?'}) until ${r.ejectedUntil ?? '?'}`],
    ['rise / fall', `${r.rise} / ${r.fall}`],
    ['checks', `${r.checks} (${r.checkFailures} failed, ${r.inconclusive} inconclusive)`],
    ['checks skipped', `${r.checksSkipped.traffic} (traffic), ${r.checksSkipped.standby} (standby), ${r.checksSkipped.shared} (shared)`],
    ['subset', r.subset ?? '—'],
    ['check port', r.port === 0 ? 'the server\'s' : r.port],
    ['last change', r.lastChange ?? '—'],
    ['index', r.index],
  ]
  return `<tr class="server ${r.status}" data-name="${esc(r.name)}">
<td class="name"><code>${esc(r.name)}</code>${tags.map((t) => ` <span class="tag">${esc(t)}</span>`).join('')}
<details data-key="${esc(`${r.upstream}/${r.name}`)}"><summary>more</summary><dl>${more.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl></details></td>
<td class="state"><span class="pill ${r.status}">${r.status}</span>${why === '' ? '' : ` <span class="why">${esc(why)}</span>`}</td>
<td class="traffic"><span class="num">${r.requests}</span> req · ${r.inflight} in flight${http2 ? streamsNote(r) : ''}<br>${chart(page.history.bars(r.upstream, r.name, r.requests, r.failures))}</td>
<td class="failures"><span class="num${r.failures > 0 ? ' bad' : ''}">${r.failures}</span>${esc(failurePct)}${r.ejections > 0 ? `<br><span class="muted">${count(r.ejections, 'ejection')}</span>` : ''}${grpcNote(r)}</td>
<td class="latency">${r.latencyMs === null ? '<span class="muted">—</span>' : `${r.latencyMs} ms`}</td>
<td class="check">${check}</td>
</tr>`
}

/** An HTTP/2 server's traffic beside its requests in flight: the streams open on its connections, its GOAWAYs. */
function streamsNote(r: ServerStatus): string {
  return ` <span class="streams">(${count(r.streams, 'stream')} open${r.goaways === 0 ? '' : `, ${count(r.goaways, 'GOAWAY')}`})</span>`
}

/** gRPC calls by status class, once the server has ended one (an error is HTTP 200: `failures` counts it only where failOn lists its status). */
function grpcNote(r: ServerStatus): string {
  if (r.grpc.ok + r.grpc.error === 0) return ''
  return `<br><span class="muted grpc${r.grpc.error > 0 ? ' bad' : ''}">gRPC ${r.grpc.ok} OK · ${count(r.grpc.error, 'error')}</span>`
}

function transitions(name: string, page: StatusPage): string {
  const recent = page.history.recent(name, TRANSITIONS_SHOWN)
  if (recent.length === 0) return '<p class="muted events-none">no transitions since vigil started</p>'
  const items = recent
    .map((t) => `<li class="${esc(t.event)}"><time datetime="${new Date(t.at).toISOString()}">${esc(ago(page.now, t.at))}</time> <code>${esc(t.server)}</code> <b>${esc(t.source)} ${esc(t.event)}</b> ${esc(t.reason)} <span class="evidence">${esc(evidence(t.evidence))}</span></li>`)
    .join('\n')
  return `<details class="events" data-key="${esc(`events/${name}`)}" open><summary>last transitions</summary><ol>\n${items}\n</ol></details>`
}

function section(name: string, rows: readonly ServerStatus[], page: StatusPage): string {
  const u = page.config.upstreams[name]
  const down = rows.filter((r) => r.status === 'down').length
  const subset = page.upstreams.get(name)?.subset
  const meta = [
    `${count(rows.length, 'server')}`,
    subset === undefined
      ? ''
      : `subset of ${subset.members.size} (consumer ${subset.index} of ${subset.count}${subset.replacements === 0 ? '' : `, ${count(subset.replacements, 'replacement')}`})`,
    down === 0 ? 'all up' : `<b class="bad">${down} down</b>`,
    u?.balance ?? 'round_robin',
    u?.protocol ?? 'http1',
    u?.active === undefined ? 'no active check' : `${u.active.type ?? 'tcp'} check`,
    `passive ${u?.passive?.mode ?? 'nginx'}`,
    u?.active === undefined ? '' : probes(rows.reduce((a, r) => a + r.probeRate, 0)),
  ].filter((m) => m !== '')
  return `<section class="upstream" id="upstream-${esc(name)}" data-upstream="${esc(name)}">
<h2>${esc(name)} <span class="meta">${meta.join(' · ')}</span></h2>
<table><colgroup><col class="c-name"><col class="c-state"><col class="c-traffic"><col class="c-failures"><col class="c-latency"><col class="c-check"></colgroup>
<thead><tr><th>server</th><th>state</th><th>traffic, last ${span(SAMPLES * SAMPLE_EVERY)}</th><th>failures</th><th>latency</th><th>check</th></tr></thead>
<tbody>
${rows.map((r) => serverRow(r, page)).join('\n')}
</tbody></table>
${transitions(name, page)}
</section>`
}

function reloadBanner(reload: LastReload | undefined, generation: number, now: number): string {
  if (reload === undefined || reload.ok) return ''
  const issues = (reload.issues ?? []).map((i) => `<li><code>${esc(i.path === '' ? '(document)' : i.path)}</code>: found ${esc(i.found)}, expected ${esc(i.expected)}</li>`).join('')
  return `<div class="alert" id="reload-failed" role="alert"><b>Last reload failed</b> (${esc(reload.source)}, ${esc(ago(now, reload.at))}); still serving generation ${generation}.
<div class="reason">${esc(issues === '' ? (reload.error ?? 'rejected') : (reload.error ?? '').split('\n')[0])}</div>${issues === '' ? '' : `<ul>${issues}</ul>`}</div>`
}

const STYLE = `
:root{--up:#1a7f37;--down:#cf222e;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;padding:12px 16px;max-width:1400px;color:#1f2328}
h1{font-size:20px;margin:0 8px 0 0;display:inline}
header p{display:inline;color:var(--muted)}
h2{font-size:16px;margin:18px 0 6px}
.meta{font-weight:normal;font-size:13px;color:var(--muted)}
table{border-collapse:collapse;width:100%;table-layout:fixed}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:var(--bg);font-weight:600;font-size:12px;color:var(--muted)}
col.c-name{width:20%}col.c-state{width:31%}col.c-traffic{width:17%}col.c-failures{width:9%}col.c-latency{width:7%}col.c-check{width:16%}
tr.server.down{background:#ffebe9}
.pill{display:inline-block;padding:0 6px;border-radius:9px;font-size:12px;font-weight:600;color:#fff;background:var(--muted)}
.pill.up{background:var(--up)}.pill.down{background:var(--down)}.pill.unknown{background:#9a6700}
.why{display:block;margin-top:2px}
tr.down .why{color:#82071e}
.tag{font-size:11px;border:1px solid var(--line);border-radius:4px;padding:0 4px;color:var(--muted)}
.muted{color:var(--muted);font-size:12px}
.num{font-variant-numeric:tabular-nums;font-weight:600}.bad{color:var(--down)}
.chart{display:block;margin-top:3px}.chart .rq{fill:#54aeff}.chart .fl{fill:var(--down)}.chart .axis{fill:var(--line)}
details summary{cursor:pointer;color:var(--muted);font-size:12px}
dl{display:grid;grid-template-columns:auto 1fr;gap:0 8px;margin:4px 0;font-size:12px}dt{color:var(--muted)}dd{margin:0}
.events ol{margin:4px 0;padding-left:18px;font-size:12px}.events li.down,.events li.ejected,.events li.disabled{color:#82071e}
.evidence{color:var(--muted);font-family:ui-monospace,monospace;font-size:11px}
.alert{border:2px solid var(--down);background:#ffebe9;border-radius:6px;padding:8px 12px;margin:10px 0}
.alert .reason{font-family:ui-monospace,monospace;white-space:pre-wrap;margin-top:4px}
.alert ul{margin:4px 0;padding-left:18px}
.reload.failed{color:var(--down);font-weight:600}
`

/** Swap in a fresh copy every `refresh` seconds, keeping the details the reader opened or closed. */
const SCRIPT = `
const every = Number(document.body.dataset.refresh) * 1000
setInterval(async () => {
  try {
    const r = await fetch(location.href, { headers: { accept: 'text/html' }, cache: 'no-store' })
    if (!r.ok) return
    const next = new DOMParser().parseFromString(await r.text(), 'text/html')
    const state = new Map([...document.querySelectorAll('details[data-key]')].map((d) => [d.dataset.key, d.open]))
    for (const d of next.querySelectorAll('details[data-key]')) if (state.has(d.dataset.key)) d.open = state.get(d.dataset.key)
    document.body.replaceWith(next.body)
  } catch {}
}, every)
`

/** The page; it refreshes itself (by script, or by meta refresh without one). */
export function renderHtml(page: StatusPage): string {
  const { rows, generation, refresh, reload, now } = page
  const down = rows.filter((r) => r.status === 'down').length
  const groups = new Map<string, ServerStatus[]>()
  for (const r of rows) (groups.get(r.upstream) ?? groups.set(r.upstream, []).get(r.upstream))?.push(r)
  const reloadLine =
    reload === undefined
      ? ''
      : ` · <span class="reload ${reload.ok ? 'ok' : 'failed'}">last reload <span id="reload">${reload.ok ? 'ok' : 'failed'}</span> (${esc(reload.source)}, ${esc(reload.at)}, ${esc(ago(now, reload.at))})</span>`
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>vigil status</title><noscript><meta http-equiv="refresh" content="${refresh}"></noscript>
<style>${STYLE}</style><script>document.addEventListener('DOMContentLoaded', () => {${SCRIPT}})</script>
</head><body data-refresh="${refresh}"><header><h1>vigil status</h1>
<p>generation ${generation} · ${count(rows.length, 'server')}, <span id="down">${down}</span> down · refreshes every ${refresh} s${reloadLine}</p></header>
${reloadBanner(reload, generation, now)}
<main>
${[...groups].map(([name, group]) => section(name, group, page)).join('\n')}
${discoveryTable(page.discovery)}
${fleetSection(page.fleet, page.now)}
${workersTable(page.workers)}
</main></body></html>\n`
}

/** One row per worker: the generation and state version it serves (a worker behind the primary is marked down). */
function workersTable(w: WorkersStatus | undefined): string {
  if (w === undefined) return ''
  const head = ['worker', 'pid', 'generation', 'state version', 'serving', 'restarts', 'failed starts', 'last start error', 'last report ms ago']
  const rows = w.workers.map((x) => {
    const cells = [x.worker, x.pid ?? '', x.generation, x.version, x.serving, x.restarts, x.failedStarts, x.startError ?? '', x.silentMs ?? '']
    return `<tr class="${x.serving && x.generation === w.generation ? 'up' : 'down'}">${cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`
  })
  const p = w.propagation
  const lag = p.last === undefined ? 'not measured yet' : `last ${p.last.ms.toFixed(1)} ms, slowest ${(p.slowest?.ms ?? 0).toFixed(1)} ms over ${p.measured} changes`
  return `<section><h2>workers</h2><p>primary generation ${w.generation}, state version ${w.version}; decision → every worker: ${esc(lag)}</p>
<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table></section>`
}

/** One row per registry source and group: is it connected, how old is its list, what the protection rules hold. */
function discoveryTable(sources: readonly SourceStatus[]): string {
  if (sources.length === 0) return ''
  const head = ['kind', 'source', 'connected', 'session', 'version', 'last read', 'age s', 'servers', 'stale', 'drifts', 'upstream', 'from cache', 'held']
  const rows = sources.flatMap((s) =>
    (s.upstreams.length === 0 ? [undefined] : s.upstreams).map((b) => {
      const cells = [s.kind, s.source, s.connected, s.session ?? '', s.version ?? '', s.lastRead ?? 'never', s.ageSeconds === undefined ? '' : s.ageSeconds.toFixed(1), s.servers, s.stale, s.drifts]
      cells.push(b?.upstream ?? '', b?.fromCache ?? '', b?.held.map((h) => `${h.address} (${h.reason} since ${h.since})`).join('; ') ?? '')
      return `<tr class="${s.stale || !s.connected ? 'down' : 'up'}">${cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`
    }),
  )
  return `<section><h2>discovery</h2>
<table id="discovery"><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>
${rows.join('\n')}
</tbody></table></section>`
}

/**
 * The fleet: this vigil's place in it, its writes, and per server what the other vigils report (each observer's
 * last word) and what this vigil did about it. Only servers someone said something about are listed.
 */
function fleetSection(fleet: FleetStatus | undefined, now: number): string {
  if (fleet === undefined) return ''
  const w = fleet.writes
  const summary = [
    `id <b>${esc(fleet.id)}</b>`,
    `index ${fleet.index} of ${fleet.count}${fleet.registered ? '' : ' <b class="bad">(not registered)</b>'}`,
    `quorum ${fleet.quorum}`,
    `writes ${w.written} (${w.pending} pending, ${w.superseded} superseded, ${w.suppressed} suppressed, ${w.failed} failed)`,
    `checks: ${fleet.checks.probed} probed here, ${fleet.checks.shared} from others`,
  ]
  const head = ['upstream', 'server', 'reporting', 'decision', 'observers (what each said)', 'checkers']
  const rows = Object.entries(fleet.upstreams).flatMap(([upstream, servers]) =>
    servers
      .filter((s) => s.observers.length > 0 || s.decision !== 'none' || s.probedHere === false)
      .map((s) => {
        const said = s.observers.map((o) => `${o.observer}: ${o.event} (${o.reason}, ${ago(now, o.at) ?? ''})`).join('; ')
        const checkers = s.checkers === undefined ? '' : `${s.checkers.join(', ')}${s.probedHere === true ? ' (this vigil)' : ''}`
        const cells = [upstream, s.server, `${s.reporting} of ${s.quorum}`, s.decision, said, checkers]
        return `<tr class="${s.decision === 'none' || s.decision === 'ignored' ? 'up' : 'down'}">${cells.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`
      }),
  )
  return `<section><h2>fleet</h2><p class="meta">${summary.join(' · ')}</p>
<table id="fleet"><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>
${rows.join('\n')}
</tbody></table></section>`
}
