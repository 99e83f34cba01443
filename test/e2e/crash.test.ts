/**
 * Crash consistency with real processes and SIGKILL: a manager killed in the
 * middle of 300 concurrent joins loses no node that received a certificate,
 * and an agent killed during renewal restarts with a matching key and
 * certificate.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { createCsr } from '../../src/pki/csr.js';
import { generateNodeKeySync } from '../../src/pki/keys.js';
import { spawnMuster, type ChildRun } from '../helpers/cli.js';
import { scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-crash-');
const children: ChildRun[] = [];
afterAll(async () => {
  await Promise.all(children.map((c) => c.stop('SIGKILL')));
  scratch.cleanup();
});

function start(argv: string[], env: Record<string, string> = {}): ChildRun {
  const child = spawnMuster(argv, { env: { MUSTER_LOG_LEVEL: 'warn', ...env } });
  children.push(child);
  return child;
}

/** One join over a fresh connection; resolves with the status and body, or the transport error. */
function postJoin(address: string, rootPem: string, body: string): Promise<{ status: number; body: string } | { error: string }> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const req = request(
      {
        host,
        port: Number(port),
        method: 'POST',
        path: '/v1/join',
        ca: rootPem,
        agent: false,
        headers: { 'content-type': 'application/json' },
        timeout: slow(20_000),
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', (e) => resolve({ error: e.message }));
      },
    );
    req.on('error', (e) => resolve({ error: e.message }));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

describe('a manager killed during 300 concurrent joins', () => {
  it('keeps every node that got a certificate, opens cleanly, and lets the others join again', { timeout: slow(120_000) }, async () => {
    const dir = scratch.path('manager');
    let manager = start(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    const [, token, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    const certs = join(dir, 'certificates');
    const rootPem = readFileSync(join(certs, 'root-ca.crt'), 'utf8');
    const bodies = Array.from({ length: 300 }, (_, i) =>
      JSON.stringify({ token, csr: createCsr({ privateKey: generateNodeKeySync().privateKey }), hostname: `n${i}` }),
    );

    let answered = 0;
    let killed = false;
    const results = await Promise.all(
      bodies.map(async (body) => {
        const result = await postJoin(address, rootPem, body);
        if ('status' in result && result.status === 200 && ++answered === 60 && !killed) {
          killed = true;
          manager.child.kill('SIGKILL');
        }
        return result;
      }),
    );
    await manager.exit;
    expect(killed).toBe(true);
    const got = results.flatMap((r, i) =>
      'status' in r && r.status === 200 ? [{ i, ...(JSON.parse(r.body) as { nodeId: string; certificate: string }) }] : [],
    );
    const lost = results.flatMap((r, i) => ('status' in r && r.status === 200 ? [] : [i]));
    expect(got.length).toBeGreaterThanOrEqual(60);
    expect(lost.length).toBeGreaterThan(0); // the kill landed mid-stream

    manager = start(['run', '--data-dir', dir, '--listen-addr', address], { MUSTER_LOG_LEVEL: 'info' });
    await manager.waitFor(/manager listening on/); // the store opened cleanly
    const admin = new ApiClient({
      managers: [address],
      tls: { rootPem, certPem: readFileSync(join(certs, 'node.crt'), 'utf8'), keyPem: readFileSync(join(certs, 'node.key'), 'utf8') },
    });
    try {
      const nodes = new Map((await admin.call('listNodes', { query: { all: '1', limit: '1000' } })).nodes.map((n) => [n.id, n])); // at most 301: one page
      for (const g of got) {
        const node = nodes.get(g.nodeId);
        expect(node, `node ${g.nodeId} got a certificate but is not in the store`).toBeDefined();
        expect(node!.certSerial).toBe(new X509Certificate(g.certificate).serialNumber);
      }
      // Everything in the store is a node we know of: the manager plus joins that were committed.
      expect(nodes.size).toBeGreaterThanOrEqual(got.length + 1);
      expect(nodes.size).toBeLessThanOrEqual(301);
      for (const i of lost) {
        const again = await postJoin(address, rootPem, bodies[i]!);
        expect('status' in again && again.status).toBe(200);
      }
    } finally {
      await admin.close();
    }
  });
});

describe('an agent killed during renewal', () => {
  it('restarts with a matching key and certificate, every time', { timeout: slow(120_000) }, async () => {
    const dir = scratch.path('manager2');
    const manager = start(['init', '--data-dir', dir, '--listen-addr', '127.0.0.1:0']);
    const [, token, address] = (await manager.waitFor(/muster join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/)) as unknown as [string, string, string];
    const nodeDir = scratch.path('node');
    let agent = start(['join', '--token', token, address, '--data-dir', nodeDir], { MUSTER_LOG_LEVEL: 'info' });
    await agent.waitFor(/This node joined cluster/);
    const serials = new Set<string>();
    for (let round = 0; round < 8; round++) {
      // Ask for renewals and kill the agent after a varying delay, landing before, during and after the write.
      const renewed = agent.waitFor(/renewed until/, slow(10_000)).catch(() => undefined);
      agent.child.kill('SIGHUP');
      if (round % 2 === 0) await new Promise((resolve) => setImmediate(resolve));
      else await renewed;
      agent.child.kill('SIGKILL');
      await agent.exit;
      agent = start(['run', '--data-dir', nodeDir], { MUSTER_LOG_LEVEL: 'info' });
      await agent.waitFor(/certificate valid until/);
      const certPem = readFileSync(join(nodeDir, 'certificates', 'node.crt'), 'utf8');
      const keyPem = readFileSync(join(nodeDir, 'certificates', 'node.key'), 'utf8');
      const cert = new X509Certificate(certPem);
      expect(cert.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
      serials.add(cert.serialNumber);
    }
    expect(serials.size).toBeGreaterThan(1); // some renewals completed before the kill
  });
});
