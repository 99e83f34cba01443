/**
 * Who each connection speaks for. A TLS connection speaks for the client
 * certificate of its handshake, parsed once (its requests share it, and the
 * authoriser's check of it); a node that renews on its session's connection
 * goes on speaking there with the certificate it was just given (issue 31):
 * the request that asked for it was authorised on this very connection, and
 * the certificate is the one the node record now names, so the node keeps
 * its one connection instead of a new handshake per renewal.
 */
import { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';

/** Connections of the manager's local Unix socket: their caller is the manager itself (the socket's folder is 0700). */
export const localSockets = new WeakSet<Socket>();

const speaksFor = new WeakMap<Socket, X509Certificate | undefined>();

/** The certificate a request's connection speaks for: its handshake's, or the one renewed on it; on the local socket, the manager's own. */
export function peerCertificate(request: FastifyRequest, own: (() => X509Certificate) | undefined): X509Certificate | undefined {
  const socket = request.raw.socket as TLSSocket;
  if (localSockets.has(socket)) return own?.();
  if (speaksFor.has(socket)) return speaksFor.get(socket);
  const cert = typeof socket.getPeerX509Certificate === 'function' ? socket.getPeerX509Certificate() : undefined;
  speaksFor.set(socket, cert);
  return cert;
}

/** After a node's renewal on this connection: its later requests here speak for `certificatePem`. Whether they do (TLS connections only). */
export function renewedOnConnection(request: FastifyRequest, certificatePem: string): boolean {
  const socket = request.raw.socket as TLSSocket;
  if (localSockets.has(socket) || socket.encrypted !== true) return false;
  speaksFor.set(socket, new X509Certificate(certificatePem));
  return true;
}
