// The one schema: TypeScript types, validation and config/schema.json all come from here.
import { Type, type Static, type TSchema } from '@sinclair/typebox'

const closed = { additionalProperties: false } as const

/** Milliseconds as a number, or a string with a unit: "1500ms", "2s", "5m", "1h". */
export const Duration = Type.Union(
  [
    Type.Integer({ minimum: 0 }),
    Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$' }),
  ],
  { description: 'milliseconds, or a string like "1500ms", "2s", "5m"', $id: undefined },
)
export type Duration = Static<typeof Duration>

/** host:port, with IPv6 hosts in brackets: "127.0.0.1:8080", "[::1]:8080", "localhost:80". */
export const Address = Type.String({
  pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$',
  description: 'host:port, e.g. 127.0.0.1:8080',
})

/**
 * Where vigil itself listens: host:port, or the short forms operators type as for nginx's `listen`:
 * ":8080" (every interface) and "8080" (loopback only: a sidecar is not exposed unless asked).
 */
export const ListenAddress = Type.String({
  pattern: '^((\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+)?:)?[0-9]{1,5}$',
  description: 'host:port, e.g. 127.0.0.1:8080 (or ":8080" for every interface, "8080" for loopback)',
})

/** A DNS SRV name, "_service._proto.name", whose records give the servers' hosts and ports. */
export const SrvName = Type.String({
  pattern: '^_[A-Za-z0-9-]+\\._(tcp|udp)\\.[A-Za-z0-9.-]+$',
  description: 'DNS SRV name like "_http._tcp.api.local" (with resolve: true)',
})

const FORMATS = 'hostport: the child name (ZooKeeper) or the value (etcd) is "host:port"; json: the data or value is a JSON object (see fields); dubbo: the child name is a URL-encoded Dubbo provider URL'

/** Where a JSON provider record keeps its host, port and weight. */
export const RecordFields = Type.Object(
  {
    host: Type.Optional(Type.String({ minLength: 1, default: 'host' })),
    port: Type.Optional(Type.String({ minLength: 1, default: 'port' })),
    weight: Type.Optional(Type.String({ minLength: 1, default: 'weight' })),
  },
  { ...closed, description: 'format "json" only: the names of the fields that hold host, port and weight' },
)

/** How every registry connection reads: how long it waits, how often it re-reads in full, when a list is stale. */
const readSettings = {
  connectTimeout: Type.Optional(Duration),
  resyncInterval: Type.Optional(Duration),
  staleAfter: Type.Optional(Duration),
}

/** Settings of a server entry's registry source: how it resists a bad push, where it caches its list. */
const registrySettings = {
  ...readSettings,
  cacheFile: Type.Optional(Type.String({ minLength: 1, description: 'every applied list is written here; vigil starts from it when the registry is down' })),
  removalGrace: Type.Optional(Duration),
  maxRemovalPercent: Type.Optional(
    Type.Integer({ minimum: 0, maximum: 100, default: 50, description: 'a list that drops more than this share of the group at once waits for a second read' }),
  ),
  confirmDelay: Type.Optional(Duration),
  allowEmpty: Type.Optional(Type.Boolean({ default: false, description: 'let an empty list empty a group that still has healthy servers' })),
}

/** How to reach a ZooKeeper ensemble (a server entry's source, and `fleet.registry`). */
const zookeeperConnection = {
  servers: Type.String({
    pattern: '^[A-Za-z0-9.:\\[\\]-]+(,[A-Za-z0-9.:\\[\\]-]+)*(/[^,]*)?$',
    description: 'the ensemble, "host:port,host:port", with an optional "/chroot"',
  }),
  sessionTimeout: Type.Optional(Duration),
  auth: Type.Optional(
    Type.Object({ user: Type.String({ minLength: 1 }), password: Type.String() }, { ...closed, description: 'ZooKeeper digest authentication' }),
  ),
}

/** How to reach an etcd cluster (a server entry's source, and `fleet.registry`). */
const etcdConnection = {
  endpoints: Type.Array(Type.String({ pattern: '^https?://[^/]+/?$', description: 'http://host:port or https://host:port' }), { minItems: 1 }),
  username: Type.Optional(Type.String({ minLength: 1 })),
  password: Type.Optional(Type.String()),
  tls: Type.Optional(
    Type.Object(
      { ca: Type.Optional(Type.String({ minLength: 1 })), cert: Type.Optional(Type.String({ minLength: 1 })), key: Type.Optional(Type.String({ minLength: 1 })) },
      { ...closed, description: 'PEM files for https endpoints: the CA, and a client certificate and key' },
    ),
  ),
}

export const ZooKeeperSource = Type.Object(
  {
    ...zookeeperConnection,
    path: Type.String({ pattern: '^/', description: 'znode whose children are the providers' }),
    format: Type.Optional(Type.Union([Type.Literal('hostport'), Type.Literal('json'), Type.Literal('dubbo')], { default: 'hostport', description: FORMATS })),
    fields: Type.Optional(RecordFields),
    ...registrySettings,
  },
  { ...closed, description: 'every child of path is a provider' },
)
export type ZooKeeperSource = Static<typeof ZooKeeperSource>

export const EtcdSource = Type.Object(
  {
    ...etcdConnection,
    prefix: Type.String({ minLength: 1, description: 'every key under this prefix is a provider' }),
    format: Type.Optional(Type.Union([Type.Literal('hostport'), Type.Literal('json')], { default: 'hostport', description: FORMATS })),
    fields: Type.Optional(RecordFields),
    ...registrySettings,
  },
  { ...closed, description: 'every key under prefix is a provider' },
)
export type EtcdSource = Static<typeof EtcdSource>

export const Server = Type.Object(
  {
    address: Type.Optional(Type.Union([Address, SrvName])),
    zookeeper: Type.Optional(ZooKeeperSource),
    etcd: Type.Optional(EtcdSource),
    weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 1 })),
    backup: Type.Optional(Type.Boolean({ default: false, description: 'used only when no primary server is eligible' })),
    down: Type.Optional(Type.Boolean({ default: false, description: 'never receives traffic' })),
    maxConns: Type.Optional(
      Type.Integer({ minimum: 0, default: 0, description: 'most requests in flight to this server at once; 0 means no limit' }),
    ),
    resolve: Type.Optional(
      Type.Boolean({ default: false, description: 'address is a DNS name (A/AAAA, or SRV for "_service._proto.name") re-resolved on its TTL' }),
    ),
  },
  closed,
)
export type Server = Static<typeof Server>
/** A server entry with an address: a static server, or one that discovery found. */
export type AddressServer = Omit<Server, 'address' | 'zookeeper' | 'etcd'> & { address: string }

/** gRPC status names (grpc/doc/statuscodes.md), as `passive.failOn` and `retry.on` name them: `grpc_UNAVAILABLE`. */
export const GRPC_CODES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const

const FailOn = Type.Union([
  Type.Literal('error'),
  Type.Literal('timeout'),
  Type.Literal('invalid_header'),
  Type.String({ pattern: '^http_[1-5][0-9][0-9]$' }),
  Type.String({ pattern: `^grpc_(${GRPC_CODES.slice(1).join('|')})$`, description: 'a gRPC status of a response, e.g. grpc_UNAVAILABLE' }),
])

export const Passive = Type.Object(
  {
    maxFails: Type.Optional(Type.Integer({ minimum: 0, default: 1 })),
    failTimeout: Type.Optional(Duration),
    failOn: Type.Optional(Type.Array(FailOn, { uniqueItems: true })),
    maxEjectPercent: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, default: 50 })),
    ejectAtLeastOne: Type.Optional(
      Type.Boolean({ default: false, description: 'the cap always lets one server of a group of two or more out, even when maxEjectPercent of it rounds down to 0' }),
    ),
    outlier: Type.Optional(
      Type.Object(
        {
          interval: Type.Optional(Duration),
          requestVolume: Type.Optional(Type.Integer({ minimum: 1, default: 100, description: 'requests a server must serve in an interval to be judged' })),
          minimumHosts: Type.Optional(Type.Integer({ minimum: 1, default: 5, description: 'servers with that volume needed to judge any' })),
          stdevFactor: Type.Optional(Type.Number({ minimum: 0, default: 1.9, description: 'success rate: eject below mean - stdevFactor x stdev' })),
          stdevFloor: Type.Optional(
            Type.Number({ minimum: 0, default: 1, description: 'success rate: the stdev (percentage points) is never taken below this; 0 is Envoy\'s exact rule' }),
          ),
          successRate: Type.Optional(Type.Boolean({ default: true })),
          threshold: Type.Optional(Type.Number({ minimum: 0, maximum: 100, default: 85, description: 'failure percentage that ejects whatever the others do; 0 turns it off' })),
        },
        { ...closed, description: 'mode "outlier": judged every interval (default 10s)' },
      ),
    ),
    mode: Type.Optional(
      // nginx max_fails/fail_timeout, maxFails in a row, maxFails within a sliding failTimeout, a failure rate,
      // or outliers relative to the group (Envoy's success rate and failure percentage).
      Type.Union([Type.Literal('nginx'), Type.Literal('consecutive'), Type.Literal('window'), Type.Literal('rate'), Type.Literal('outlier')], { default: 'nginx' }),
    ),
    ejectTime: Type.Optional(Duration),
    maxEjectTime: Type.Optional(Duration),
    failPercent: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 50, description: 'rate mode: failure percentage that ejects' })),
    minRequests: Type.Optional(Type.Integer({ minimum: 1, default: 10, description: 'rate mode: requests in the window before the rate counts' })),
    failOpen: Type.Optional(Type.Boolean({ default: true, description: 'older place of the upstream\'s failOpen (selection), still read when that is unset' })),
    recoveryProbe: Type.Optional(
      Type.Union(
        [
          Type.Boolean(),
          Type.Object(
            {
              enabled: Type.Optional(Type.Boolean({ default: true })),
              interval: Type.Optional(Duration),
              maxInterval: Type.Optional(Duration),
            },
            closed,
          ),
        ],
        {
          default: true,
          description:
            'while ejected on connection-level evidence, probe the server (its active check, else a TCP connect: first at once, then interval doubling to maxInterval, default 250ms and 500ms) and let it back as soon as one passes',
        },
      ),
    ),
    stall: Type.Optional(
      Type.Object(
        {
          enabled: Type.Optional(Type.Boolean({ default: true })),
          factor: Type.Optional(Type.Number({ minimum: 1, default: 10, description: "multiple of the group's recent p99 response time" })),
          floor: Type.Optional(Duration),
          redispatch: Type.Optional(
            Type.Boolean({ default: true, description: 'race the idempotent requests already waiting on a suspect server on another server' }),
          ),
        },
        { ...closed, description: 'suspect a server whose oldest waiting request is far older than the group usually takes' },
      ),
    ),
  },
  closed,
)
export type Passive = Static<typeof Passive>

export const ActiveHttp = Type.Object(
  {
    method: Type.Optional(Type.String({ pattern: '^[A-Z]+$', default: 'GET' })),
    path: Type.Optional(Type.String({ pattern: '^/', default: '/' })),
    host: Type.Optional(Type.String({ minLength: 1, description: 'Host header of the check; default the upstream\'s "host", else the server address' })),
    headers: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$' }), Type.String(), { additionalProperties: false, description: 'extra request headers' })),
    expectStatus: Type.Optional(Type.Array(Type.String({ pattern: '^([1-5]xx|[1-5][0-9][0-9])$' }), { minItems: 1, default: ['2xx', '3xx'] })),
    expectBody: Type.Optional(Type.String({ minLength: 1, description: 'regular expression the response body must match (first 64 KiB)' })),
  },
  closed,
)

export const ActiveTls = Type.Object(
  {
    serverName: Type.Optional(Type.String({ minLength: 1, description: 'SNI name; default the server host when it is a name' })),
    skipVerify: Type.Optional(Type.Boolean({ default: false, description: 'accept any certificate (self-signed providers)' })),
  },
  { ...closed, description: 'for type "https"' },
)

export const ActiveTcp = Type.Object(
  {
    send: Type.Optional(Type.String({ minLength: 1, description: 'bytes written after connecting, e.g. "PING\\r\\n"' })),
    expect: Type.Optional(Type.String({ minLength: 1, description: 'text the reply must contain, e.g. "+PONG"' })),
  },
  { ...closed, description: 'for type "tcp": an optional send/expect exchange' },
)

export const ActiveGrpc = Type.Object(
  {
    service: Type.Optional(
      Type.String({ description: 'service name asked about in grpc.health.v1.Health/Check; default "" (the whole server)' }),
    ),
  },
  { ...closed, description: 'for type "grpc"' },
)

export const Active = Type.Object(
  {
    type: Type.Optional(Type.Union([Type.Literal('tcp'), Type.Literal('http'), Type.Literal('https'), Type.Literal('grpc')], { default: 'tcp' })),
    interval: Type.Optional(Duration),
    timeout: Type.Optional(Duration),
    rise: Type.Optional(Type.Integer({ minimum: 1, default: 2 })),
    fall: Type.Optional(Type.Integer({ minimum: 1, default: 5 })),
    defaultDown: Type.Optional(Type.Boolean({ default: false })),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, default: 0 })),
    fastInterval: Type.Optional(Duration),
    downInterval: Type.Optional(Duration),
    trafficInterval: Type.Optional(Duration),
    jitter: Type.Optional(Type.Number({ minimum: 0, maximum: 0.5, default: 0.1, description: 'each interval varies by up to this fraction either way' })),
    maxInFlight: Type.Optional(Type.Integer({ minimum: 1, default: 64, description: 'checks of this kind running at once' })),
    unejectOnPass: Type.Optional(
      Type.Boolean({ default: true, description: 'a passing check lifts a passive ejection when it tests what failed' }),
    ),
    http: Type.Optional(ActiveHttp),
    tls: Type.Optional(ActiveTls),
    tcp: Type.Optional(ActiveTcp),
    grpc: Type.Optional(ActiveGrpc),
  },
  closed,
)
export type Active = Static<typeof Active>

export const Retry = Type.Object(
  {
    on: Type.Optional(Type.Array(FailOn, { uniqueItems: true })),
    tries: Type.Optional(Type.Integer({ minimum: 1, default: 3 })),
    timeout: Type.Optional(Duration),
    nonIdempotent: Type.Optional(Type.Boolean({ default: false })),
    perTryTimeout: Type.Optional(Duration),
    hedge: Type.Optional(Type.Boolean({ default: false, description: 'after perTryTimeout, race a second attempt instead of abandoning the first' })),
    budget: Type.Optional(
      Type.Object(
        {
          percent: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, default: 20 })),
          minPerSecond: Type.Optional(Type.Number({ minimum: 0, default: 10 })),
        },
        { ...closed, description: 'retries and hedges allowed over the last 10 s: percent of requests, at least minPerSecond' },
      ),
    ),
  },
  closed,
)
export type Retry = Static<typeof Retry>

export const Timeouts = Type.Object(
  {
    connect: Type.Optional(Duration),
    response: Type.Optional(Duration),
    idle: Type.Optional(Duration),
    /** Longest wait for a connection of a server's pool (all its connections busy): then 503 pool_timeout. Default: `connect`. */
    queue: Type.Optional(Duration),
  },
  closed,
)

/** A file path (PEM), relative to the working directory vigil runs in. */
const PemFile = Type.String({ minLength: 1, description: 'path to a PEM file' })

/** How vigil connects to HTTPS providers; `true` means verified TLS with the system CAs. */
export const UpstreamTls = Type.Object(
  {
    servername: Type.Optional(Type.String({ minLength: 1, description: 'SNI and certificate name; default: the upstream "host", else the server address host' })),
    ca: Type.Optional(PemFile),
    cert: Type.Optional(PemFile),
    key: Type.Optional(PemFile),
    verify: Type.Optional(Type.Boolean({ default: true, description: 'verify the provider certificate (never turn off in production)' })),
  },
  closed,
)
export type UpstreamTls = Static<typeof UpstreamTls>

export const Balance = Type.Union(
  [
    Type.Literal('round_robin'),
    Type.Literal('least_conn'),
    Type.Literal('random'),
    Type.Literal('p2c'),
    Type.Literal('ewma'),
    Type.Literal('hash'),
  ],
  { default: 'round_robin' },
)

/** What `balance: "hash"` hashes: the client address, a request header, a cookie, or the path. */
export const HashKey = Type.String({
  pattern: "^(ip|path|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$",
  default: 'ip',
  description: '"ip", "path", "header:NAME" or "cookie:NAME"',
})

/** nginx `queue`: when every server is at its maxConns limit, up to `size` requests wait up to `timeout` (default 60s). */
export const Queue = Type.Object(
  {
    size: Type.Integer({ minimum: 1 }),
    timeout: Type.Optional(Duration),
  },
  { ...closed, description: 'requests that wait while every server is at its maxConns limit' },
)

/** Deterministic subsetting (src/upstream/subset.ts): this vigil uses `size` of the group's servers. */
export const Subset = Type.Object(
  {
    size: Type.Integer({ minimum: 1, description: 'servers this vigil uses; every server gets about size × of / servers consumers' }),
    id: Type.Optional(Type.Integer({ minimum: 0, description: "this vigil's place among the consumers, 0 ≤ id < of (set by hand without fleet registration)" })),
    of: Type.Optional(Type.Integer({ minimum: 1, description: 'how many consumers share the group (set by hand without fleet registration)' })),
  },
  { ...closed, description: 'use a stable, balanced subset of the servers: the primaries that are not down; backups are all kept' },
)
export type Subset = Static<typeof Subset>

export const Upstream = Type.Object(
  {
    balance: Type.Optional(Balance),
    hashKey: Type.Optional(HashKey),
    hashBalanceFactor: Type.Optional(
      Type.Integer({
        minimum: 100,
        description: 'balance "hash" only: a server takes at most this percentage of the average load, then keys spill to the next on the ring',
      }),
    ),
    ewmaDecay: Type.Optional(Duration),
    slowStart: Type.Optional(Duration),
    queue: Type.Optional(Queue),
    host: Type.Optional(Type.String({ minLength: 1, description: 'Host header sent to the servers instead of the client\'s' })),
    servers: Type.Array(Server, { minItems: 1 }),
    subset: Type.Optional(Subset),
    failOpen: Type.Optional(
      Type.Boolean({ default: true, description: 'when no server is eligible, try every enabled non-down server instead of answering 503 (Envoy\'s panic mode)' }),
    ),
    passive: Type.Optional(Passive),
    active: Type.Optional(Active),
    retry: Type.Optional(Retry),
    timeouts: Type.Optional(Timeouts),
    tls: Type.Optional(Type.Union([Type.Boolean(), UpstreamTls], { description: 'true, or an object with servername, ca, cert, key, verify' })),
    maxResponseSize: Type.Optional(Type.Integer({ minimum: 1, description: 'largest response body in bytes; a longer one is cut and counts as a bad response' })),
    protocol: Type.Optional(
      Type.Union([Type.Literal('http1'), Type.Literal('h2c'), Type.Literal('h2')], {
        default: 'http1',
        description: 'to the servers: HTTP/1.1, HTTP/2 with prior knowledge (cleartext), or HTTP/2 over TLS (ALPN h2); active checks speak it too',
      }),
    ),
    http2: Type.Optional(
      Type.Object(
        {
          connections: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, default: 1, description: 'multiplexed connections per server at most' })),
          maxConcurrentStreams: Type.Optional(
            Type.Integer({ minimum: 1, maximum: 10000, default: 100, description: "streams per connection at most (lowered by the server's own SETTINGS)" }),
          ),
        },
        { ...closed, description: 'protocol h2c or h2: connections to each server' },
      ),
    ),
  },
  closed,
)
export type Upstream = Static<typeof Upstream>
/**
 * A group as one generation builds it: every server entry resolved to addresses, and with a `subset` placed by the
 * fleet, this vigil's consumer id and every registered one (src/upstream/subset.ts keys the subsets by them).
 */
export type GroupConfig = Omit<Upstream, 'servers'> & { servers: AddressServer[]; placement?: { id: string; ids: readonly string[] } }

const UpstreamName = Type.String({ pattern: '^[A-Za-z0-9_.-]+$' })

export const Route = Type.Object(
  {
    host: Type.Optional(Type.String({ minLength: 1, description: 'Host header to match, without port; "*.example.com" matches subdomains' })),
    pathPrefix: Type.Optional(Type.String({ pattern: '^/', default: '/' })),
    upstream: UpstreamName,
  },
  closed,
)
export type Route = Static<typeof Route>

/** An IPv4 or IPv6 address with an optional prefix length: "10.0.0.0/8", "::1", "fd00::/8". */
const Cidr = Type.String({ pattern: '^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$', description: 'an IP address or CIDR block' })

export const ListenerTls = Type.Object({ cert: PemFile, key: PemFile }, { ...closed, description: 'serve HTTPS with this certificate chain and key' })

/** What one HTTP/2 client connection may do before it gets GOAWAY (listener `http2`). */
export const Http2Limits = Type.Object(
  {
    maxConcurrentStreams: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000, default: 100, description: 'streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)' })),
    maxResets: Type.Optional(Type.Integer({ minimum: 1, default: 200, description: 'streams a client may cancel per window (rapid reset, CVE-2023-44487)' })),
    maxSettings: Type.Optional(Type.Integer({ minimum: 1, default: 100, description: 'SETTINGS frames a client may send per window' })),
    maxPings: Type.Optional(Type.Integer({ minimum: 1, default: 100, description: 'PING frames a client may send per window' })),
    window: Type.Optional(Duration),
    sendTimeout: Type.Optional(Duration),
  },
  { ...closed, description: 'limits for HTTP/2 clients; over one, the connection gets GOAWAY (ENHANCE_YOUR_CALM)' },
)
export type Http2Limits = Static<typeof Http2Limits>

/** Limits on what one client may send and how slowly; each closes the connection or answers 4xx when crossed. */
export const ClientLimits = Type.Object(
  {
    headersTimeout: Type.Optional(Duration),
    requestTimeout: Type.Optional(Duration),
    idleTimeout: Type.Optional(Duration),
    keepAliveTimeout: Type.Optional(Duration),
    maxHeaderSize: Type.Optional(Type.Integer({ minimum: 1024, maximum: 1048576, description: 'bytes of request line plus headers' })),
    maxHeaders: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })),
    allowTrace: Type.Optional(Type.Boolean({ default: false, description: 'forward TRACE requests (default: 405, as nginx)' })),
    allowUserinfo: Type.Optional(
      Type.Boolean({ default: false, description: 'accept absolute-form targets with userinfo (http://user:pw@host/); default: 400' }),
    ),
    http2: Type.Optional(Http2Limits),
  },
  closed,
)
export type ClientLimits = Static<typeof ClientLimits>

export const Listener = Type.Object(
  {
    address: ListenAddress,
    upstream: Type.Optional(UpstreamName),
    routes: Type.Optional(Type.Array(Route, { minItems: 1 })),
    tls: Type.Optional(ListenerTls),
    http2: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'speak HTTP/2: with tls, h2 by ALPN beside HTTP/1.1; without, h2c with prior knowledge only (gRPC over cleartext)',
      }),
    ),
    trustedProxies: Type.Optional(Type.Array(Cidr, { description: 'clients whose Forwarded / X-Forwarded-* headers are kept and appended to' })),
    forwardedHeaders: Type.Optional(
      Type.Boolean({
        default: true,
        description: "add Forwarded and X-Forwarded-* describing the client; false: add none and pass the client's own on unchanged",
      }),
    ),
    limits: Type.Optional(ClientLimits),
  },
  closed,
)
export type Listener = Static<typeof Listener>

export const Admin = Type.Object(
  {
    address: Type.Optional(ListenAddress),
    token: Type.Optional(Type.String({ minLength: 1 })),
  },
  closed,
)

export const AccessLog = Type.Union(
  [
    Type.Boolean(),
    Type.Object(
      {
        path: Type.Optional(Type.String({ minLength: 1, description: 'file to append to, reopened on SIGUSR1 (log rotation); stdout when absent' })),
        format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('combined')], { default: 'json' })),
      },
      closed,
    ),
  ],
  { default: false, description: 'true (JSON lines on stdout), or an object with path, format' },
)
export type AccessLog = Static<typeof AccessLog>

export const Log = Type.Object(
  {
    level: Type.Optional(
      Type.Union(
        [
          Type.Literal('fatal'),
          Type.Literal('error'),
          Type.Literal('warn'),
          Type.Literal('info'),
          Type.Literal('debug'),
          Type.Literal('trace'),
          Type.Literal('silent'),
        ],
        { default: 'info' },
      ),
    ),
    access: Type.Optional(AccessLog),
  },
  closed,
)

export const Reload = Type.Object(
  {
    watch: Type.Optional(Type.Boolean({ default: true, description: 'reload when the config file changes (SIGHUP and POST /reload always work)' })),
    debounce: Type.Optional(Duration),
  },
  { ...closed, description: 'config file reloads' },
)

export const Resolver = Type.Object(
  {
    servers: Type.Optional(Type.Array(Address, { minItems: 1, description: 'DNS servers to ask instead of the system ones' })),
    minTtl: Type.Optional(Duration),
    maxTtl: Type.Optional(Duration),
    timeout: Type.Optional(Duration),
  },
  { ...closed, description: 'DNS resolution for servers with resolve: true' },
)

/** A fleet of vigils sharing what they see through the registry the fleet already runs (docs/fleet.md). */
export const Fleet = Type.Object(
  {
    registry: Type.Object(
      {
        zookeeper: Type.Optional(Type.Object({ ...zookeeperConnection, ...readSettings }, { ...closed, description: 'a ZooKeeper ensemble' })),
        etcd: Type.Optional(Type.Object({ ...etcdConnection, ...readSettings }, { ...closed, description: 'an etcd cluster' })),
      },
      { ...closed, description: 'exactly one of zookeeper or etcd: how to reach the registry' },
    ),
    path: Type.String({ pattern: '^/[^\\s]*[^/\\s]$', description: 'ZooKeeper path or etcd key prefix under which this fleet keeps its records' }),
    id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]{1,128}$', description: 'this vigil\'s consumer id (default: host name and process id)' })),
    ttl: Type.Optional(Duration),
    quorum: Type.Optional(Type.Integer({ minimum: 1, description: 'observers that must report a server failing (default: max(2, 10% of the consumers))' })),
    window: Type.Optional(Duration),
    writeRate: Type.Optional(Type.Number({ exclusiveMinimum: 0, default: 5, description: 'most observation writes per second of one vigil (burst of the same size)' })),
    writeJitter: Type.Optional(Duration),
    suspectWeight: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100, default: 10, description: 'percent of its weight a suspect server keeps until its own check or traffic clears it' }),
    ),
    localWindow: Type.Optional(Duration),
    shareChecks: Type.Optional(
      Type.Object(
        { k: Type.Integer({ minimum: 1, description: 'consumers that check each server (rendezvous hashing over the registered consumers)' }) },
        { ...closed, description: 'split active checks: each server is checked by k consumers, the others use their published results' },
      ),
    ),
  },
  { ...closed, description: 'shared observations and consumer registration through a registry' },
)
export type Fleet = Static<typeof Fleet>

export const Config = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    listeners: Type.Array(Listener, { minItems: 1 }),
    admin: Type.Optional(Admin),
    log: Type.Optional(Log),
    shutdown: Type.Optional(
      Type.Object({ grace: Type.Optional(Duration) }, { ...closed, description: 'SIGTERM/SIGINT handling' }),
    ),
    reload: Type.Optional(Reload),
    workers: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1, maximum: 256 }), Type.Literal('auto')], {
        description: 'worker processes that accept and forward, with one primary that checks and decides health ("auto": one per core); unset: one process. Changes at the next restart',
      }),
    ),
    resolver: Type.Optional(Resolver),
    upstreams: Type.Record(UpstreamName, Upstream, { minProperties: 1, additionalProperties: false }),
    fleet: Type.Optional(Fleet),
  },
  { ...closed, title: 'vigil configuration' },
)
export type Config = Static<typeof Config>

/** The JSON Schema document shipped as config/schema.json. */
export function jsonSchema(): TSchema {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    ...JSON.parse(JSON.stringify(Config)),
  }
}
