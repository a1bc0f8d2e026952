import type { Balancer } from './balancer.js'
import { RoundRobin } from './round-robin.js'
import { LeastConn } from './least-conn.js'
import { WeightedRandom } from './random.js'
import { PowerOfTwo } from './p2c.js'
import { PeakEwmaBalancer } from './ewma.js'
import { ConsistentHash, parseHashKey } from './hash.js'
import type { Upstream } from '../config/schema.js'

export type { Balancer, PickRequest } from './balancer.js'

/** One entry per `balance` value in the schema. */
const policies: Record<NonNullable<Upstream['balance']>, (config: Upstream) => Balancer> = {
  round_robin: () => new RoundRobin(),
  least_conn: () => new LeastConn(),
  random: () => new WeightedRandom(),
  p2c: () => new PowerOfTwo(),
  ewma: () => new PeakEwmaBalancer(),
  hash: (config) =>
    new ConsistentHash({
      key: parseHashKey(config.hashKey ?? 'ip'),
      balanceFactor: config.hashBalanceFactor ?? 0,
      totalWeight: config.servers.reduce((sum, s) => sum + (s.weight ?? 1), 0),
    }),
}

export function createBalancer(config: Upstream): Balancer {
  return policies[config.balance ?? 'round_robin'](config)
}
