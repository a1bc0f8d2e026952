import type { Balancer } from './balancer.js'
import { RoundRobin } from './round-robin.js'
import type { Upstream } from '../config/schema.js'

export type { Balancer } from './balancer.js'

/** One entry per `balance` value in the schema. */
const policies: Record<NonNullable<Upstream['balance']>, () => Balancer> = {
  round_robin: () => new RoundRobin(),
}

export function createBalancer(policy: Upstream['balance']): Balancer {
  return policies[policy ?? 'round_robin']()
}
