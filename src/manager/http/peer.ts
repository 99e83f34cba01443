/**
 * Who each connection speaks for. A TLS connection speaks for the client
 * certificate of its handshake, parsed once (its requests share it, and the
 * authoriser's check of it); a node that renews on its session's connection
 * goes on speaking there with the certificate it was just given (issue 31):
 * the request that asked for it was authorised on this very connection, and
 * the certificate is the one the node record now names, so the node keeps
 * its one connection instead of a new handshake per renewal. What this
 * manager issued it knows without parsing it: the renewed certificate comes
 * with the check it would pass (OpenSSL 3.0, Node 20's, takes ~0.2 ms to
 * parse one and ~0.07 ms to check its signature: a third of a renewal's
 * CPU beyond the floor's), and is parsed only if that no longer holds (the
 * roots changed).
 */
import { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';

/** Connections of the manager's local Unix socket: their caller is the manager itself (the socket's folder is 0700). */
export const localSockets = new WeakSet<Socket>();

/** A certificate this manager issued to the node on this connection, and its check as of its issuance (undefined: check it as any other). */
export class IssuedPeer<Known> {
  private parsed: X509Certificate | undefined;
  constructor(
    readonly pem: string,
    readonly known: Known | undefined,
  ) {}

  /** The certificate itself, parsed at the first need. */
  get x509(): X509Certificate {
    this.parsed ??= new X509Certificate(this.pem);
    return this.parsed;
  }
}

/** What a connection speaks for: a handshake's certificate, or one issued on it. */
export type PeerCert<Known> = X509Certificate | IssuedPeer<Known>;

const speaksFor = new WeakMap<Socket, PeerCert<unknown> | undefined>();

/** The certificate a request's connection speaks for: its handshake's, or the one renewed on it; on the local socket, the manager's own. */
export function peerCertificate<Known>(request: FastifyRequest, own: (() => X509Certificate) | undefined): PeerCert<Known> | undefined {
  const socket = request.raw.socket as TLSSocket;
  if (localSockets.has(socket)) return own?.();
  if (speaksFor.has(socket)) return speaksFor.get(socket) as PeerCert<Known> | undefined;
  const cert = typeof socket.getPeerX509Certificate === 'function' ? socket.getPeerX509Certificate() : undefined;
  speaksFor.set(socket, cert);
  return cert;
}

/** After a node's renewal on this connection: its later requests here speak for `certificatePem` (whose check is `known`). Whether they do (TLS connections only). */
export function renewedOnConnection<Known>(request: FastifyRequest, certificatePem: string, known: Known | undefined): boolean {
  const socket = request.raw.socket as TLSSocket;
  if (localSockets.has(socket) || socket.encrypted !== true) return false;
  speaksFor.set(socket, new IssuedPeer(certificatePem, known));
  return true;
}
