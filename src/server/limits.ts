/**
 * What one client may make the server hold. A client can open connections, send half a frame
 * and stop, or send requests and never read the replies; each of those holds server memory
 * until the client goes. These bounds make what all clients together can hold a fixed amount,
 * and the price of hitting one is paid by the client that did (its connection waits or is
 * dropped), never by the others. See docs/security.md.
 */

export interface ServerLimits {
  /** Client connections at once (transports and open files together); more are refused. */
  readonly maxConnections: number;
  /** A new connection must send its first request (HELLO, OPEN, RESERVE) within this. */
  readonly handshakeMs: number;
  /** A request begun must have arrived whole within this. */
  readonly frameMs: number;
  /** Reply bytes a connection may leave unread before its requests stop being read. */
  readonly replyBacklog: number;
  /**
   * Bytes held for all clients together (requests not yet whole, replies not yet read) above
   * which a connection holding some is no longer read from until the total falls back.
   */
  readonly bufferBudget: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxConnections: 8192,
  handshakeMs: 10_000,
  frameMs: 10_000,
  replyBacklog: 4 << 20,
  bufferBudget: 256 << 20,
};
