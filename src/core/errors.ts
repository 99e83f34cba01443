/**
 * The error catalogue: every failure muster reports has one stable `code`,
 * an HTTP status for the API and an exit code for the CLI. Callers branch on
 * `code`, never on message text. README.md documents every code (a test
 * checks it).
 */

/**
 * The exit status of a node process that stopped for good: it was removed,
 * or its certificate expired past the renewal grace, or its data dir holds no
 * node. Starting it again cannot help until an operator acts, so the example
 * systemd units do not restart it (RestartPreventExitStatus=3). The other
 * exit codes: 0 success, 1 operational failure, 2 usage error.
 */
export const EXIT_FATAL = 3;

/** How one error code surfaces on the wire and in the shell. */
export interface ErrorSpec {
  /** HTTP status when the error crosses the API. */
  readonly status: number;
  /** CLI exit code: 1 operational failure, 2 usage error. */
  readonly exit: 1 | 2;
  /** Short default message, lower case, no trailing period. */
  readonly message: string;
  /** Default fix, shown as `hint:`. */
  readonly hint?: string;
}

const spec = (status: number, exit: 1 | 2, message: string, hint?: string): ErrorSpec =>
  hint === undefined ? { status, exit, message } : { status, exit, message, hint };

/** Every error code muster can report. */
export const ERROR_CATALOGUE = {
  // Usage and configuration.
  USAGE: spec(400, 2, 'invalid usage', 'run the command with --help'),
  DURATION_INVALID: spec(400, 2, 'invalid duration', "write durations like '90m', '1h', '2160h' or '90d'"),
  CERT_EXPIRY_TOO_SHORT: spec(400, 2, 'certificate expiry is below the minimum of 5m', 'use --cert-expiry 5m or longer'),
  ADDRESS_INVALID: spec(400, 2, 'invalid address', "write addresses as HOST:PORT, e.g. '127.0.0.1:4377'"),
  ADDRESS_IN_USE: spec(409, 1, 'the address is already in use', 'pick another --listen-addr, or stop the process holding the port'),
  CLUSTER_EXISTS: spec(409, 1, 'the data dir already holds a cluster', "restart it with 'muster run --data-dir DIR', or pick another --data-dir"),
  NOT_INITIALISED: spec(404, 1, 'the data dir holds no node', "create a cluster with 'muster init' or join one with 'muster join'"),
  DATA_DIR_INSECURE: spec(400, 1, 'the data dir can be read by other users', 'run: chmod 0700 DIR'),
  DATA_DIR_LOCKED: spec(409, 1, 'another muster process runs on this data dir', 'stop it first; a second node on this machine needs its own --data-dir'),
  KEY_FILE_INSECURE: spec(400, 1, 'a private key file can be read by other users', 'run: chmod 0600 FILE'),
  STATE_CORRUPT: spec(500, 1, 'the data dir holds unreadable state'),
  FILE_ACCESS: spec(500, 1, 'a file or folder muster needs cannot be used'),
  FILE_EXISTS: spec(409, 1, 'a file muster would write is already there', 'pick another --out, or move the old files away first'),
  OWNER_NOT_PERMITTED: spec(
    403,
    1,
    'only a node that runs as root may give files to another user',
    "run the node as root (the Debian package does), or leave out --owner: the files are then the node's own user's",
  ),

  // Join tokens.
  TOKEN_INVALID: spec(
    400,
    2,
    'invalid join token',
    "a join token looks like SWMTKN-1-<50 base36 chars>-<25 base36 chars>; get one with 'muster join-token worker'",
  ),
  TOKEN_REJECTED: spec(
    401,
    1,
    'the join token was not accepted',
    "the token may have been rotated, expired, used up, or belong to another cluster; ask an admin for 'muster join-token worker'",
  ),
  TOKEN_NOT_FOUND: spec(404, 1, 'no scoped join token has that ID', "list them with 'muster join-token ls'"),

  // Certificate signing requests.
  CSR_TOO_LARGE: spec(400, 1, 'the CSR is larger than 16 KiB'),
  CSR_NOT_PEM: spec(400, 1, 'the CSR is not PEM', "send a PEM block starting with '-----BEGIN CERTIFICATE REQUEST-----'"),
  CSR_MALFORMED: spec(400, 1, 'the CSR is not a valid PKCS#10 request'),
  CSR_BAD_SIGNATURE: spec(400, 1, 'the CSR signature does not verify'),
  CSR_WEAK_KEY: spec(400, 1, 'the CSR key is too weak', 'use an EC P-256/P-384 key or RSA of at least 2048 bits'),
  CSR_UNSUPPORTED_KEY: spec(400, 1, 'the CSR key type is not supported', 'use an EC P-256/P-384 key or RSA of at least 2048 bits'),
  CSR_UNSUPPORTED_ALGORITHM: spec(400, 1, 'the CSR signature algorithm is not supported', 'sign the CSR with SHA-256, SHA-384 or SHA-512'),

  // Root CA import.
  CA_CERT_INVALID: spec(400, 2, 'the CA certificate is not a PEM X.509 certificate'),
  CA_KEY_INVALID: spec(400, 2, 'the CA key is not a PEM private key'),
  CA_NOT_CA: spec(400, 2, 'the certificate is not a CA (basicConstraints CA:TRUE is missing)'),
  CA_NOT_SELF_SIGNED: spec(400, 2, 'the CA certificate is not self-signed', 'muster needs the root certificate itself, not an intermediate'),
  CA_EXPIRES_SOON: spec(400, 2, 'the CA certificate expires within a year'),
  CA_KEY_MISMATCH: spec(400, 2, 'the CA key does not match the CA certificate'),
  CA_UNSUPPORTED_KEY: spec(400, 2, 'the CA key type is not supported', 'use RSA of at least 2048 bits or EC P-256/P-384'),
  ADMIN_CA_UNAVAILABLE: spec(
    409,
    1,
    'this cluster has no admin CA: an external CA holds the root key, so API users are issued under the root itself',
    'give services the cluster root instead, and check the OU (swarm-admin) where they can',
  ),
  CA_ROTATION_REPLACED: spec(
    409,
    1,
    'another root rotation replaced this one before it completed',
    "follow it with 'muster ca --rotate' again, or see where it stands with 'muster ca'",
  ),

  // Peer certificates and authorisation.
  CERT_INVALID: spec(401, 1, 'the certificate cannot be parsed'),
  CERT_UNTRUSTED: spec(401, 1, 'the certificate was not issued by this cluster'),
  CERT_EXPIRED: spec(
    401,
    1,
    'the certificate has expired',
    "a node renews by itself within the renewal grace after expiry; past it, clear the node with 'muster leave' and join again ('muster join --force --token-file FILE ADDR')",
  ),
  CERT_NOT_YET_VALID: spec(401, 1, 'the certificate is not valid yet', 'check the clocks of this machine and the manager'),
  AUTH_REQUIRED: spec(401, 1, 'a client certificate from this cluster is required', 'pass --tls-cert/--tls-key/--tls-ca or set MUSTER_CERT_PATH'),
  AUTH_FORBIDDEN: spec(403, 1, 'this certificate is not allowed to call this route'),
  NODE_REMOVED: spec(
    403,
    1,
    'this node has been removed from the cluster',
    "clear it with 'muster leave', then join again; 'muster join --force --token-file FILE ADDR' does both",
  ),
  CERT_REVOKED: spec(403, 1, 'this API-user certificate has been revoked', "ask an admin for a new one: 'muster ca create-api-certificate NAME'"),
  USER_NOT_FOUND: spec(404, 1, 'no API-user certificate has that name'),
  CERT_REVOKED_BY_CRL: spec(
    400,
    1,
    "the manager's certificate is on the cluster's CRL",
    'the server is a removed or demoted manager: ask an admin for the address of a current manager',
  ),
  CRL_INVALID: spec(
    400,
    1,
    "the manager's CRL is missing, stale or not signed by the cluster root",
    'check the clocks of this machine and the manager, and the manager address',
  ),
  CRL_UNAVAILABLE: spec(
    404,
    1,
    'this cluster publishes no CRL: an external CA signs its certificates',
    "revocation is the external CA's: publish a CRL from it (cfssl gencrl)",
  ),
  CRL_ISSUER_UNKNOWN: spec(
    404,
    1,
    'no root this cluster trusts with that key identifier signs a CRL here',
    "'GET /v1/crl?format=pem' serves the CRL of every root the cluster trusts",
  ),

  // Requests.
  BODY_INVALID: spec(400, 1, 'the request body is invalid'),
  BODY_TOO_LARGE: spec(413, 1, 'the request body is too large'),
  UNSUPPORTED_MEDIA_TYPE: spec(415, 1, 'the request body must be application/json'),
  ROUTE_NOT_FOUND: spec(404, 1, 'no such route'),
  NODE_NOT_FOUND: spec(404, 1, 'no such node', "list the nodes with 'muster node ls'"),
  NODE_AMBIGUOUS: spec(409, 1, 'more than one node matches', 'give more of the node ID'),
  RATE_LIMITED: spec(429, 1, 'too many failed join attempts from this address', 'wait and try again'),
  REQUEST_TIMEOUT: spec(408, 1, 'the request took too long'),
  REQUEST_MALFORMED: spec(400, 1, 'the request is not valid HTTP'),
  URI_TOO_LONG: spec(414, 1, 'the request path is too long'),
  HEADERS_TOO_LARGE: spec(431, 1, 'the request headers are too large'),

  // Service certificates (muster cert …).
  SERVICE_NAME_INVALID: spec(
    400,
    2,
    'invalid service certificate name',
    'use 1 to 63 lower-case letters, digits, dots, dashes or underscores, starting with a letter or digit',
  ),
  SERVICE_LIMIT: spec(
    409,
    1,
    'the node holds as many service certificates as it may',
    "a node holds at most 32 service certificates that have not expired (removed ones count until they expire); reuse a name it has ('muster cert ls')",
  ),
  SAN_INVALID: spec(
    400,
    2,
    'a name for a certificate is neither a DNS name nor an IP address',
    "write names like 'web.example.com', '*.example.com' or '10.0.0.5'",
  ),
  SAN_NOT_ALLOWED: spec(
    403,
    1,
    "the managers do not allow this node's service certificates to name that",
    "a service certificate may name the node's hostname and advertise address; an admin allows more with 'muster node update --add-san PATTERN NODE'",
  ),
  SERVICE_CERT_NOT_FOUND: spec(404, 1, 'no service certificate has that name on this node', "list them with 'muster cert ls'"),
  NODE_NOT_RUNNING: spec(
    409,
    1,
    'no muster node process runs on this data dir',
    "start it with 'muster run --data-dir DIR': the running node makes and renews service certificates",
  ),

  // Node lifecycle.
  NODE_ACTIVE: spec(409, 1, 'the node is still active', "use 'muster node rm -f ID' to remove it anyway"),
  LAST_MANAGER: spec(409, 1, 'this is the last manager of the cluster'),
  QUORUM_AT_RISK: spec(
    409,
    1,
    'the change would leave the managed store without a quorum of reachable members',
    'bring the unreachable managers back first; if a quorum is lost for good, recover with `muster init --force-new-cluster` on a surviving manager',
  ),
  LEAVE_MANAGER: spec(409, 1, 'this node is a manager', "use 'muster leave --force' to leave anyway"),
  MANAGER_RUNNING: spec(
    409,
    1,
    'the manager is running on this data dir',
    'stop it first (Ctrl-C, or systemctl stop muster-manager), then run the command again',
  ),
  EMBEDDED_STORE: spec(
    409,
    1,
    'this cluster keeps its state in an embedded store, which only one manager can serve',
    "move it to etcd first: stop the manager and run 'muster store migrate --to etcd'",
  ),

  // Autolock.
  MANAGER_LOCKED: spec(
    503,
    1,
    'this manager is locked: its keys are encrypted under the unlock key',
    "unlock it on its host with 'muster unlock' (the key from 'muster unlock-key' on another manager, or where you keep it)",
  ),
  UNLOCK_KEY_INVALID: spec(400, 2, 'invalid unlock key', 'an unlock key looks like SWMKEY-1-<43 base64 characters>'),
  UNLOCK_KEY_WRONG: spec(
    403,
    1,
    'the unlock key does not unlock this manager',
    'if the key was rotated while this manager was down, give the key before the rotation',
  ),
  AUTOLOCK_OFF: spec(409, 1, 'autolock is off for this cluster', "turn it on with 'muster update --autolock=true'"),
  NOT_LOCKED: spec(409, 1, 'this manager is not locked'),

  // The cluster store.
  STORE_UNAVAILABLE: spec(
    503,
    1,
    'the cluster store is unavailable',
    'the request can be retried; check that the store (etcd, or the manager disk) is healthy',
  ),
  STORE_CONFLICT: spec(503, 1, 'too many concurrent changes to the same records', 'try again'),
  DATA_KEY_UNAVAILABLE: spec(
    503,
    1,
    "this manager holds no copy of the cluster's current data key",
    'restart it after its certificate renewed; a demoted or removed manager gets none',
  ),
  ETCD_MISSING: spec(
    400,
    1,
    'the etcd server muster runs for a managed store is missing',
    "install Debian's etcd server: 'sudo apt-get install etcd-server', or name a binary with --etcd-binary PATH",
  ),
  BACKUP_INVALID: spec(400, 1, 'the file is not a complete, intact muster backup', "make a new one with 'muster store backup --out FILE' on a running manager"),
  BACKUP_KEY_WRONG: spec(
    403,
    1,
    'the key does not open this backup',
    'give the key the backup names: the unlock key under autolock, else the backup key printed when it was made',
  ),
  ETCD_MEMBER_FAILED: spec(
    503,
    1,
    "this manager's etcd member could not start or serve",
    "see the member's log lines above; check that its client and peer ports are free (--etcd-client-addr, --etcd-peer-addr)",
  ),

  // Talking to a manager.
  MANAGER_UNREACHABLE: spec(503, 1, 'cannot reach the manager', 'check the address and that the manager is running'),
  MANAGER_ERROR: spec(502, 1, 'the manager answered with an error'),
  ROOT_DIGEST_MISMATCH: spec(
    400,
    1,
    "the manager's root CA does not match the join token",
    'the token belongs to another cluster, or someone in the middle is impersonating the manager; check the token and the address',
  ),
  NOT_A_MANAGER: spec(400, 1, 'the server did not present a manager certificate of this cluster'),
  CLOCK_SKEW: spec(400, 1, "this machine's clock disagrees with the manager's", "set the clock right (NTP: 'timedatectl set-ntp true') and try again"),
  ISSUED_CERT_INVALID: spec(502, 1, 'the certificate returned does not match the request'),

  // External CA.
  EXTERNAL_CA_UNAVAILABLE: spec(503, 1, 'the external CA could not be reached', 'the request can be retried'),
  EXTERNAL_CA_ERROR: spec(502, 1, 'the external CA refused to sign'),

  // A bug: never for bad input.
  INTERNAL: spec(500, 1, 'internal error'),
} as const satisfies Record<string, ErrorSpec>;

/** A stable error code. */
export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** Options for a {@link MusterError} beyond its code. */
export interface MusterErrorOptions {
  hint?: string;
  cause?: unknown;
  /** Extra fields for the JSON error body (never secrets). */
  details?: Record<string, unknown>;
  /** The node process stops for good: exit {@link EXIT_FATAL} instead of the code's own exit code. */
  fatal?: boolean;
}

/** An expected failure with a stable code; safe to show to users. */
export class MusterError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly exitCode: 1 | 2 | typeof EXIT_FATAL;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, options: MusterErrorOptions = {}) {
    const entry: ErrorSpec = ERROR_CATALOGUE[code];
    super(message ?? entry.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MusterError';
    this.code = code;
    this.statusCode = entry.status;
    this.exitCode = options.fatal === true ? EXIT_FATAL : entry.exit;
    this.hint = options.hint ?? entry.hint;
    this.details = options.details;
  }

  /** The JSON body the API sends for this error. */
  toJSON(): { statusCode: number; code: ErrorCode; message: string; hint?: string } {
    const body: { statusCode: number; code: ErrorCode; message: string; hint?: string } = {
      statusCode: this.statusCode,
      code: this.code,
      message: this.message,
    };
    if (this.hint !== undefined) body.hint = this.hint;
    return { ...body, ...this.details };
  }
}

/** True when `value` is a MusterError, optionally with the given code. */
export function isMusterError(value: unknown, code?: ErrorCode): value is MusterError {
  return value instanceof MusterError && (code === undefined || value.code === code);
}

/** True when `value` is a known error code. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CATALOGUE, value);
}
