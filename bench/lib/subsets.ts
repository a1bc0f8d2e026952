// A fleet's subsets and how they change: shared by the subset stability bench and the subset tests.
import { subset } from '../../src/upstream/subset.js'

export type Subsetter = (servers: readonly string[], consumer: { index: number; count: number }, size: number) => string[]

/** The subset of each of `count` consumers, by index. */
export function fleetSubsets(servers: readonly string[], count: number, size: number, pick: Subsetter = subset): string[][] {
  return Array.from({ length: count }, (_, index) => pick(servers, { index, count }, size))
}

export interface SubsetChange {
  /** Consumers whose subset is not the same set as before. */
  consumers: number
  /** The most members any one subset lost (and gained: the sizes are equal). */
  maxMembers: number
  /** Members lost, summed over consumers. */
  moves: number
}

/** How `after` differs from `before`, consumer by consumer (the same index in both). */
export function subsetChange(before: readonly (readonly string[])[], after: readonly (readonly string[])[]): SubsetChange {
  let consumers = 0
  let maxMembers = 0
  let moves = 0
  before.forEach((b, i) => {
    const a = new Set(after[i])
    const lost = b.filter((s) => !a.has(s)).length
    if (lost > 0 || a.size !== b.length) consumers++
    maxMembers = Math.max(maxMembers, lost)
    moves += lost
  })
  return { consumers, maxMembers, moves }
}
