// gRPC providers for tests: bench/lib/grpc-health-provider.ts as a real child process, controlled over its HTTP port.
import { spawnScript, type Provider } from './index.js'
import { grpcProviderScript } from '../../bench/lib/procs.js'

type Tap = { teardown(fn: () => unknown): void }

export interface GrpcProvider extends Provider {
  /** Change its behaviour: `health=NOT_SERVING[&service=NAME]`, `fail=14`, `delay=MS`. */
  control(query: string): Promise<{ name: string; served: number; fail: number; delay: number }>
}

export async function spawnGrpcProvider(t: Tap, name: string, args: string[] = []): Promise<GrpcProvider> {
  const { ready, ...provider } = await spawnScript(t, name, grpcProviderScript, args)
  const control = async (query: string): Promise<{ name: string; served: number; fail: number; delay: number }> => {
    const res = await fetch(`http://127.0.0.1:${ready['control'] as number}/_control?${query}`)
    return (await res.json()) as { name: string; served: number; fail: number; delay: number }
  }
  return { ...provider, control }
}
