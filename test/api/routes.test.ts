/** The route table (src/api/routes.ts): every schema it names exists on both sides, every entry says who may call it, and paths fill in. */
import { describe, expect, it } from 'vitest';
import * as Plain from '../../src/api/plain-schemas.js';
import { API, pathOf, type Endpoint } from '../../src/api/routes.js';
import * as Schemas from '../../src/api/schemas.js';

const entries = Object.entries(API) as [string, Endpoint][];

describe('the route table', () => {
  it.each(entries)('%s names schemas that schemas.ts has (the manager validates with them)', (_name, endpoint) => {
    for (const ref of [endpoint.params, endpoint.query, endpoint.body, endpoint.response]) {
      if (ref !== undefined) expect(Object.keys(Schemas), ref.name).toContain(ref.name);
    }
  });

  it.each(entries.filter(([, e]) => e.response !== undefined))('%s answers with a schema the client has in plain form', (_name, endpoint) => {
    expect(Object.keys(Plain)).toContain(endpoint.response!.name);
  });

  it.each(entries)('%s declares who may call it (roles) or why it is public, not both, and a JSON answer or a media type', (_name, endpoint) => {
    expect((endpoint.allow === undefined) !== (endpoint.public === undefined)).toBe(true);
    expect((endpoint.response === undefined) !== (endpoint.raw === undefined)).toBe(true);
  });

  it('has each method and path once', () => {
    const keys = entries.map(([, e]) => `${e.method} ${e.path}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('fills path parameters in, encoded, and refuses a missing one', () => {
    expect(pathOf(API.getNode, { id: 'a/b c' })).toBe('/v1/nodes/a%2Fb%20c');
    expect(pathOf(API.rotateToken, { role: 'worker' })).toBe('/v1/join-tokens/worker/rotate');
    expect(() => pathOf(API.getNode, {})).toThrow(/no value for :id/);
    expect(pathOf(API.listNodes, undefined)).toBe('/v1/nodes');
  });
});
