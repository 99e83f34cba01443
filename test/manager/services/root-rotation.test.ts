/**
 * Root rotation in the services (issue 18): the cross-signed chain that old
 * and new trust both accept (checked by openssl), renew advice, the
 * leader's completion once every node that is up has rotated, tokens that
 * keep their secrets under the new digest, and a node that slept through it.
 */
import { X509Certificate } from 'node:crypto';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Caller } from '../../../src/manager/state/caller.js';
import { acceptBundle } from '../../../src/agent/join.js';
import { systemRandom } from '../../../src/core/random.js';
import { createRootCa, rootDigest } from '../../../src/pki/ca.js';
import { readBundle } from '../../../src/pki/peer.js';
import { parseJoinToken } from '../../../src/token/join-token.js';
import { opensslStatus, scratchDir } from '../../helpers/openssl.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { HOUR, foundTestCluster, freshCsr, interceptCommits, memoryStore, type TestCluster } from '../../helpers/service.js';

const scratch = scratchDir('muster-rotation-');
// A cluster of its own for each test of 'root rotation', so each passes alone and in any order.
let t: TestCluster;
let admin: Caller;
afterAll(() => scratch.cleanup());

let n = 0;
const file = (text: string): string => scratch.write(`f${n++}.pem`, text);
const codeOf = (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (e: { code?: string }) => e.code,
  );

async function join() {
  const key = freshCsr();
  const response = await t.caServer.join({ token: t.settings.joinTokens().worker, csr: key.csr }, '10.0.0.1');
  return { id: response.nodeId, certPem: response.certificate, rootCA: response.rootCA };
}

async function poll(certPem: string) {
  const caller = await t.authoriser.authorize(new X509Certificate(certPem), ['worker', 'manager']);
  return t.inventory.self(caller);
}

async function renew(certPem: string) {
  const caller = await t.authoriser.authorize(new X509Certificate(certPem), ['worker', 'manager'], { expiredWithinGrace: true });
  return t.caServer.renew(caller, { csr: freshCsr().csr });
}

describe('root rotation', () => {
  beforeEach(async () => {
    t = await foundTestCluster({ certExpiryMs: 24 * HOUR });
    admin = await t.authoriser.authorize(t.managerCert, ['manager', 'admin']);
    await t.rotation.stop(); // the test drives reconcile() itself, on the fake clock
  });
  afterEach(() => t.cleanup());

  /** Two nodes joined, then a rotation started. */
  async function started() {
    const nodes = [await join(), await join()];
    const oldRoot = t.state.root.pem;
    const oldToken = t.settings.joinTokens().worker;
    const status = await t.rotation.start({}, admin);
    return { nodes, oldRoot, oldToken, status };
  }

  it('starts: /v1/ca keeps the old root (tokens still pin it), nodes get old+new and are told to renew', async () => {
    const { nodes, oldRoot, status } = await started();
    expect(status).toMatchObject({ rotating: true, rootDigest: rootDigest(oldRoot).toString('hex'), nodes: { total: 3, rotated: 0 } });
    expect(t.state.root.pem).toBe(oldRoot);
    expect(readBundle(t.state.trust.bundlePem)).toHaveLength(2);
    const advice = await poll(nodes[0]!.certPem);
    expect(advice).toMatchObject({ renewNow: true, reason: 'ca-rotation', rootCA: t.state.trust.bundlePem });
    expect(await t.rotation.reconcile()).toBe(false);
  });

  it('issues under the new root with the cross-signed intermediate: openssl accepts it against the old root and the new one', async () => {
    const { nodes } = await started();
    const renewed = await renew(nodes[0]!.certPem);
    nodes[0]!.certPem = renewed.certificate;
    expect(readBundle(renewed.certificate)).toHaveLength(2); // leaf + cross-signed new root
    const [oldCert, newCert] = readBundle(renewed.rootCA);
    const leaf = file(renewed.certificate);
    const chain = file(readBundle(renewed.certificate)[1]!.toString());
    expect(opensslStatus(['verify', '-CAfile', file(oldCert!.toString()), '-untrusted', chain, leaf]).status).toBe(0);
    expect(opensslStatus(['verify', '-CAfile', file(newCert!.toString()), leaf]).status).toBe(0);
    expect(opensslStatus(['verify', '-CAfile', file(oldCert!.toString()), leaf]).status).not.toBe(0);
    // A node that renewed is not told again; the joins of the rotation are under the new root too.
    expect((await poll(renewed.certificate)).renewNow).toBe(false);
    t.clock.advance(2_500); // past the status cache
    expect((await t.rotation.status()).nodes).toEqual({ total: 3, rotated: 1 });
  });

  it("completes once every node that is up has rotated; a down node is not waited for; tokens keep their secrets under the new root's digest", async () => {
    const { nodes, oldRoot, oldToken } = await started();
    nodes[0]!.certPem = (await renew(nodes[0]!.certPem)).certificate; // node 0 renewed under the new root
    t.clock.advance(2_500);
    const sleeper = nodes[1]!; // stays on the old root, and goes quiet
    t.clock.advance(3 * 60_000);
    // The manager and node 0 are heard from again (their polls), the sleeper is not.
    nodes[0]!.certPem = (await renew(nodes[0]!.certPem)).certificate;
    const manager = await renew(t.managerTls.certPem);
    t.clock.advance(2_500);
    expect((await t.rotation.status()).nodes).toEqual({ total: 2, rotated: 2 });
    expect(await t.rotation.reconcile()).toBe(true);
    const newRoot = t.state.root.pem;
    expect(newRoot).not.toBe(oldRoot);
    expect(readBundle(t.state.trust.bundlePem)).toHaveLength(1);
    const token = t.settings.joinTokens().worker;
    expect(parseJoinToken(token).digest.equals(rootDigest(newRoot))).toBe(true);
    expect(parseJoinToken(token).secret.equals(parseJoinToken(oldToken).secret)).toBe(true);
    expect(await codeOf(t.caServer.join({ token: oldToken, csr: freshCsr().csr }, '10.0.0.3'))).toBe('TOKEN_REJECTED');
    expect(opensslStatus(['verify', '-CAfile', file(newRoot), file(manager.certificate)]).status).toBe(0);
    // The cross-signed certificate stays published: the old root vouches for the new one.
    const [cross] = readBundle(t.state.trust.crossSigned.join(''));
    expect(cross!.publicKey.equals(new X509Certificate(newRoot).publicKey)).toBe(true);

    // The sleeper comes back with its old certificate: still accepted, told to renew, and renewed under the new root.
    const advice = await poll(sleeper.certPem);
    expect(advice).toMatchObject({ renewNow: true, reason: 'ca-rotation', rootCA: newRoot });
    const renewed = await renew(sleeper.certPem);
    expect(opensslStatus(['verify', '-CAfile', file(newRoot), file(renewed.certificate)]).status).toBe(0);
    expect(readBundle(renewed.certificate)).toHaveLength(1); // no intermediate once the rotation is over
  });

  it('a rotation replaced by another target while it runs: a node that renewed under the first target renews under the second', async () => {
    const first = await t.rotation.start({}, admin);
    const node = await join(); // issued under the first target
    const replaced = await t.rotation.start({}, admin);
    expect(replaced.targetDigest).not.toBe(first.targetDigest);
    const advice = await poll(node.certPem); // still accepted: the replaced target stays trusted
    expect(advice).toMatchObject({ renewNow: true, reason: 'ca-rotation' });
    const renewed = await renew(node.certPem);
    expect(rootDigest(readBundle(renewed.rootCA)[1]!.toString()).toString('hex')).toBe(replaced.targetDigest);
    // The node takes the new bundle: the current root (held) and the new target, vouched for by the current root.
    expect(acceptBundle(renewed.rootCA, node.rootCA, renewed.crossSigned)).toBe(true);
  });

  it('a node takes a new root only when a root it holds vouches for it', async () => {
    await t.rotation.start({}, admin);
    const held = t.state.root.pem;
    const stranger = createRootCa({ clusterId: t.clusterId, clock: t.clock, random: systemRandom }).certPem;
    expect(acceptBundle(`${held}${stranger}`, held)).toBe(false); // a manager's word alone adds nothing
    expect(acceptBundle(`${held}${stranger}`, held, t.state.trust.crossSigned.join(''))).toBe(false); // vouchers for other roots do not count
    expect(acceptBundle(t.state.trust.bundlePem, held, t.state.trust.crossSigned.join(''))).toBe(true);
  });

  it('refuses a new root that is the current one', async () => {
    await t.rotation.start({}, admin);
    await t.rotation.start({}, admin); // a new target for the rotation under way
    expect(await codeOf(t.rotation.start({ caCertPem: t.state.root.pem }, admin))).toBe('BODY_INVALID');
    expect(t.auditLines.filter((l) => l.includes('"ca.rotate"')).length).toBeGreaterThanOrEqual(2); // the start and the new target
  });
});

describe('two rotations started at once', () => {
  it('the one replaced before it answered is audited with its own target as replaced, the one that stands as ok', async () => {
    const inner = await memoryStore();
    let interleave: (() => Promise<unknown>) | undefined;
    // The second rotation commits right after the first one's commit, before the first one writes its audit line.
    const store = interceptCommits(inner, async (txn) => {
      const committed = await inner.commit(txn);
      const second = interleave;
      if (committed && second !== undefined && txn.puts.some((p) => p.key === KEYS.ca.key)) {
        interleave = undefined;
        await second();
      }
      return committed;
    });
    const c = await foundTestCluster({ store, certExpiryMs: 24 * HOUR });
    try {
      const caller = await c.authoriser.authorize(c.managerCert, ['manager', 'admin']);
      const [first, second] = [0, 1].map(() => createRootCa({ clusterId: c.clusterId, clock: c.clock, random: systemRandom }));
      const digest = (pem: string): string => rootDigest(pem).toString('hex');
      interleave = () => c.rotation.start({ caCertPem: second!.certPem, caKeyPem: second!.keyPem }, caller);
      const answer = await c.rotation.start({ caCertPem: first!.certPem, caKeyPem: first!.keyPem }, caller);
      expect(answer.targetDigest).toBe(digest(second!.certPem));
      const lines = c.auditLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.action === 'ca.rotate');
      expect(lines).toHaveLength(2);
      expect(lines).toContainEqual(expect.objectContaining({ target: digest(second!.certPem), result: 'ok' }));
      expect(lines).toContainEqual(expect.objectContaining({ target: digest(first!.certPem), result: 'error', code: 'CA_ROTATION_REPLACED' }));
    } finally {
      await c.cleanup();
    }
  });
});
