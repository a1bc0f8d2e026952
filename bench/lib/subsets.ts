// A fleet's subsets and how they change: shared by the subset stability bench and the subset tests. Consumers are
// named (fleet registration ids); an algorithm keyed by a consumer's index takes its place in the sorted names.
import { SubsetAssignment } from '../../src/upstream/subset.js'

/** Every consumer's subset, by consumer name. */
export type FleetSubsets = ReadonlyMap<string, readonly string[]>
export type FleetSubsetter = (servers: readonly string[], consumers: readonly string[], size: number) => FleetSubsets

/** vigil's assignment (src/upstream/subset.ts), optionally with another slack. */
export const vigilSubsets = (slackPercent?: number): FleetSubsetter => (servers, consumers, size) => {
  const a = new SubsetAssignment(servers, consumers, size, slackPercent)
  return new Map(consumers.map((c) => [c, a.subset(c)]))
}

/** An algorithm that picks one consumer's subset from its index among the sorted names and their count. */
export const byIndex =
  (pick: (servers: readonly string[], index: number, count: number, size: number) => string[]): FleetSubsetter =>
  (servers, consumers, size) => {
    const sorted = [...consumers].sort()
    return new Map(sorted.map((c, index) => [c, pick(servers, index, sorted.length, size)]))
  }

/** Consumer names as a fleet registers them. */
export const consumerNames = (n: number, prefix = 'vigil'): string[] => Array.from({ length: n }, (_, i) => `${prefix}-${i}`)

/** How many subsets hold each server (servers in no subset count 0). */
export function perServer(servers: readonly string[], subsets: FleetSubsets): number[] {
  const n = new Map<string, number>(servers.map((s) => [s, 0]))
  for (const s of subsets.values()) for (const a of s) n.set(a, (n.get(a) ?? 0) + 1)
  return [...n.values()]
}

export interface SubsetChange {
  /** Consumers (present before and after) whose subset is not the same set as before. */
  consumers: number
  /** The most members any one subset lost. */
  maxMembers: number
  /** Members lost, summed over consumers. */
  moves: number
}

/** How `after` differs from `before`, consumer by consumer (by name: one that joined or left is not counted). */
export function subsetChange(before: FleetSubsets, after: FleetSubsets): SubsetChange {
  let consumers = 0
  let maxMembers = 0
  let moves = 0
  for (const [c, b] of before) {
    const got = after.get(c)
    if (got === undefined) continue
    const a = new Set(got)
    const lost = b.filter((s) => !a.has(s)).length
    if (lost > 0 || a.size !== b.length) consumers++
    maxMembers = Math.max(maxMembers, lost)
    moves += lost
  }
  return { consumers, maxMembers, moves }
}
