/**
 * The running node's local socket, <data-dir>/agent.sock (0600 in the 0700
 * data dir): how `muster cert add|ls|rm` reach the agent that keeps the
 * service certificates. Plain HTTP with JSON bodies, as docker.sock; only
 * the data dir's owner can open it, and whoever can acts as this node.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import Type from 'typebox';
import Value from 'typebox/value';
import { MusterError, isMusterError } from '../core/errors.js';
import { listenOnSocket } from '../core/local-socket.js';
import type { Logger } from '../core/logger.js';
import { normaliseSan, isServiceName } from '../core/san-pattern.js';
import { DEFAULT_HOOK_TIMEOUT_MS, resolveOwner, type ServiceCertificates, type ServiceStatus } from './service-certs.js';

/** The agent socket's paths. */
export const AGENT_ROUTES = { certificates: '/v1/service-certificates' } as const;

/** POST /v1/service-certificates on the agent socket: `muster cert add`. */
export const AddServiceRequest = Type.Object(
  {
    name: Type.String({ maxLength: 64 }),
    sans: Type.Array(Type.String({ maxLength: 253 }), { maxItems: 32 }),
    client: Type.Boolean(),
    /** Absolute. */
    out: Type.String({ minLength: 1, maxLength: 4096, pattern: '^/' }),
    layout: Type.Union([Type.Literal('pem'), Type.Literal('docker')]),
    owner: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    mode: Type.Optional(Type.Integer({ minimum: 0, maximum: 0o777 })),
    exec: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { minItems: 1, maxItems: 256 })),
    execTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
  },
  { additionalProperties: false },
);
export type AddServiceRequest = Type.Static<typeof AddServiceRequest>;

/** The body of every answer: the certificates (ls), one certificate (add, rm), or an error. */
export interface AgentAnswer {
  certificates?: ServiceStatus[];
  certificate?: ServiceStatus;
  /** Hook failures since the node started, all services together. */
  hookFailures?: number;
}

const MAX_BODY = 64 * 1024;

async function readBody(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new MusterError('BODY_TOO_LARGE');
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new MusterError('BODY_INVALID', 'the request body is not JSON');
  }
}

/** Checks an add request and turns it into a definition (owner resolved to IDs, names normalised). */
async function definitionFrom(body: unknown): Promise<Parameters<ServiceCertificates['add']>[0]> {
  if (!Value.Check(AddServiceRequest, body)) throw new MusterError('BODY_INVALID', 'the service certificate request does not have the expected fields');
  if (!isServiceName(body.name)) throw new MusterError('SERVICE_NAME_INVALID', `${JSON.stringify(body.name)} is not a valid service certificate name`);
  return {
    name: body.name,
    sans: body.sans.map(normaliseSan),
    client: body.client,
    out: body.out,
    layout: body.layout,
    ...(body.owner === undefined ? {} : { owner: await resolveOwner(body.owner) }),
    keyMode: body.mode ?? 0o600,
    ...(body.exec === undefined ? {} : { exec: body.exec }),
    execTimeoutMs: body.execTimeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS,
  };
}

/** Serves the agent socket at `path` (a stale socket a killed process left is replaced). */
export async function serveAgentSocket(path: string, deps: { services: ServiceCertificates; logger: Logger }): Promise<{ close(): Promise<void> }> {
  const { services, logger } = deps;
  const handle = async (request: IncomingMessage): Promise<AgentAnswer> => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const prefix = `${AGENT_ROUTES.certificates}/`;
    if (url.pathname === AGENT_ROUTES.certificates && request.method === 'GET') return { certificates: services.list(), hookFailures: services.hookFailures };
    if (url.pathname === AGENT_ROUTES.certificates && request.method === 'POST')
      return { certificate: await services.add(await definitionFrom(await readBody(request))) };
    if (url.pathname.startsWith(prefix) && request.method === 'DELETE')
      return { certificate: await services.remove(decodeURIComponent(url.pathname.slice(prefix.length))) };
    throw new MusterError('ROUTE_NOT_FOUND');
  };
  const answer = (response: ServerResponse, status: number, body: unknown): void => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  const server = createServer((request, response) => {
    handle(request).then(
      (body) => answer(response, 200, body),
      (error: unknown) => {
        const refusal = isMusterError(error) ? error : new MusterError('INTERNAL', undefined, { cause: error });
        if (refusal.code === 'INTERNAL') logger.error({ err: error instanceof Error ? error.message : String(error) }, 'the agent socket failed a request');
        answer(response, refusal.statusCode, refusal.toJSON());
      },
    );
  });
  return listenOnSocket(server, path);
}
