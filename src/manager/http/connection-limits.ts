/** A manager's caps on open connections (no server code here: the CLI reads their defaults at start-up, before it loads a server). */

/** Caps on open connections, so that idle or slow ones cannot eat the manager's file descriptors. */
export interface ConnectionLimits {
  /** A connection must finish its TLS handshake within this (Node's default is 120 s). */
  handshakeMs: number;
  /** Open connections at most, in all. */
  total: number;
  /** Open connections at most from one source address. */
  perSource: number;
}

/** Enough for every node of a large cluster to hold a connection; set the process's file limit above `total`. */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { handshakeMs: 10_000, total: 200_000, perSource: 1_024 };
