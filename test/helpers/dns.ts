// A tiny authoritative DNS server on a loopback UDP port, with records the test changes at will.
// vigil's real resolver (node:dns, c-ares) is pointed at it, so no DNS traffic ever leaves the machine.
import { createSocket } from 'node:dgram'
import type { AddressInfo } from 'node:net'
import * as packet from 'dns-packet'

type Tap = { teardown(fn: () => unknown): void }

export interface DnsRecords {
  A?: { address: string; ttl: number }[]
  AAAA?: { address: string; ttl: number }[]
  SRV?: { priority: number; weight: number; port: number; target: string; ttl: number }[]
}

export interface DnsServer {
  address: string
  /** name -> records; names not here answer NXDOMAIN. */
  zone: Map<string, DnsRecords>
  /** Answer SERVFAIL to everything while true. */
  failing: boolean
  /** Queries received per "TYPE name". */
  queries: Map<string, number>
}

const SERVFAIL = 2
const NXDOMAIN = 3

export async function dnsServer(t: Tap): Promise<DnsServer> {
  const socket = createSocket('udp4')
  const server: DnsServer = { address: '', zone: new Map(), failing: false, queries: new Map() }
  socket.on('message', (msg, from) => {
    const query = packet.decode(msg)
    const q = query.questions?.[0]
    if (q === undefined) return
    const key = `${q.type} ${q.name}`
    server.queries.set(key, (server.queries.get(key) ?? 0) + 1)
    const records = server.zone.get(q.name)
    let rcode = 0
    const answers: packet.Answer[] = []
    if (server.failing) rcode = SERVFAIL
    else if (records === undefined) rcode = NXDOMAIN
    else if (q.type === 'A' || q.type === 'AAAA') for (const r of records[q.type] ?? []) answers.push({ type: q.type, name: q.name, ttl: r.ttl, data: r.address })
    else if (q.type === 'SRV') {
      for (const r of records.SRV ?? []) answers.push({ type: 'SRV', name: q.name, ttl: r.ttl, data: { priority: r.priority, weight: r.weight, port: r.port, target: r.target } })
    }
    const reply = packet.encode({ id: query.id, type: 'response', flags: packet.AUTHORITATIVE_ANSWER | packet.RECURSION_DESIRED | rcode, questions: query.questions, answers })
    socket.send(reply, from.port, from.address)
  })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => socket.close(() => resolve())))
  server.address = `127.0.0.1:${(socket.address() as AddressInfo).port}`
  return server
}
