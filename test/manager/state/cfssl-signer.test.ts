/**
 * Failure handling of the external CA, against a scriptable cfssl stand-in
 * on loopback (the real cfssl serve is exercised in test/e2e/external-ca).
 */
import { X509Certificate, createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/core/clock.js';
import { MusterError } from '../../../src/core/errors.js';
import type { recordingLogger } from '../../../src/core/logger.js';
import { systemRandom } from '../../../src/core/random.js';
import { CfsslSigner, signEndpoint } from '../../../src/manager/state/cfssl-signer.js';
import { createRootCa, loadSigningCa } from '../../../src/pki/ca.js';
import { parseCsr } from '../../../src/pki/csr.js';
import { issueCertificate } from '../../../src/pki/issue.js';
import { KEYS } from '../../../src/store/cluster-store.js';
import { codeOf } from '../../helpers/codes.js';
import { HOUR, contendedStore, foundTestCluster, freshCsr, memoryStore, type TestCluster } from '../../helpers/service.js';

type Mode = 'ok' | 'down' | 'slow' | 'refuse' | 'wrong-subject' | 'wrong-key' | 'foreign-root';
const clock = new FakeClock(Date.now());
const root = createRootCa({ clusterId: 'external', clock, random: systemRandom });
const ca = loadSigningCa(root);
const foreign = loadSigningCa(createRootCa({ clusterId: 'external', clock, random: systemRandom }));

/** A cfssl stand-in that signs with `root` the way cfssl does, or misbehaves as told. */
class FakeCfssl {
  mode: Mode = 'ok';
  requests: Record<string, unknown>[] = [];
  readonly server: Server;
  url = '';
  constructor(readonly authKeyHex?: string) {
    this.server = createServer((req, res) => void this.handle(req, res));
  }
  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }
  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = '';
    for await (const chunk of req) raw += (chunk as Buffer).toString('utf8');
    if (this.mode === 'down') return void req.socket.destroy();
    if (this.mode === 'slow') return; // never answers
    let body = JSON.parse(raw) as Record<string, unknown>;
    if (this.authKeyHex !== undefined) {
      const inner = Buffer.from(String(body.request), 'base64');
      const expected = createHmac('sha256', Buffer.from(this.authKeyHex, 'hex')).update(inner).digest('base64');
      if (req.url !== '/api/v1/cfssl/authsign' || body.token !== expected)
        return void res.end(JSON.stringify({ success: false, result: null, errors: [{ code: 400, message: 'invalid token' }] }));
      body = JSON.parse(inner.toString('utf8')) as Record<string, unknown>;
    }
    this.requests.push(body);
    if (this.mode === 'refuse')
      return void res.end(JSON.stringify({ success: false, result: null, errors: [{ code: 5300, message: 'policy violation: no' }] }));
    const subject = body.subject as { CN: string; names: { O: string; OU: string }[] };
    const csr = parseCsr(this.mode === 'wrong-key' ? freshCsr().csr : String(body.certificate_request));
    const issued = issueCertificate({
      ca: this.mode === 'foreign-root' ? foreign : ca,
      csr,
      role: subject.names[0]?.OU === 'swarm-manager' ? 'manager' : subject.names[0]?.OU === 'swarm-admin' ? 'admin' : 'worker',
      commonName: this.mode === 'wrong-subject' ? 'evil' : subject.CN,
      clusterId: subject.names[0]?.O ?? '',
      validityMs: 3_600_000,
      clock,
      random: systemRandom,
    });
    res.end(JSON.stringify({ success: true, result: { certificate: issued.certPem }, errors: [], messages: [] }));
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

let first: FakeCfssl;
let second: FakeCfssl;
let authed: FakeCfssl;
let cluster: TestCluster;
let logger: ReturnType<typeof recordingLogger>;

// Fresh stand-ins and a fresh cluster for each test: tests set a CA's mode, count its requests,
// read the latest logged failure and switch the cluster's CA list, none of which may reach another test.
beforeEach(async () => {
  first = new FakeCfssl();
  second = new FakeCfssl();
  authed = new FakeCfssl('0f'.repeat(32));
  await Promise.all([first.start(), second.start(), authed.start()]);
  cluster = await foundTestCluster({ certExpiryMs: 3_600_000, root: { certPem: root.certPem }, externalCAs: [{ url: first.url }] });
  logger = cluster.logger;
});
afterEach(async () => {
  await Promise.all([first.stop(), second.stop(), authed.stop()]);
  await cluster.cleanup();
});

const join = () => cluster.caServer.join({ token: cluster.settings.joinTokens().worker, csr: freshCsr().csr }, `src-${Math.random()}`);
const count = async (): Promise<[number, number]> => [(await cluster.store.list(KEYS.nodes)).length, (await cluster.store.list(KEYS.certificates)).length];
const failure = async (promise: Promise<unknown>): Promise<MusterError> => {
  try {
    await promise;
  } catch (error) {
    if (error instanceof MusterError) return error;
    throw error;
  }
  throw new Error('expected a failure');
};

/** The reason the manager logged for the latest external CA failure. */
const lastCaFailure = (): string => String(logger.records.filter((r) => r.message === 'external CA failed').at(-1)?.fields.reason);

describe('CfsslSigner through the CA server', () => {
  it('sends the subject and hosts the manager chose, and hands out what chains to the root', async () => {
    const response = await join();
    const request = first.requests.at(-1)!;
    expect(request).toMatchObject({
      subject: { CN: response.nodeId, names: [{ O: cluster.clusterId, OU: 'swarm-worker' }] },
      hosts: ['swarm-worker', response.nodeId],
      profile: 'node',
    });
    expect(new X509Certificate(response.certificate).checkIssued(ca.cert)).toBe(true);
    expect((await cluster.settings.clusterView(false)).ca).toMatchObject({ external: true, externalUrls: [first.url] });
  });

  it.each([
    ['unreachable', 'down', 503, 'EXTERNAL_CA_UNAVAILABLE', /cannot be reached|broke off/],
    ['answering success:false', 'refuse', 502, 'EXTERNAL_CA_ERROR', /refused to sign: policy violation: no/],
    ['returning another subject', 'wrong-subject', 502, 'EXTERNAL_CA_ERROR', /has the subject .*CN=evil.* it was refused/],
    ['returning another key', 'wrong-key', 502, 'EXTERNAL_CA_ERROR', /does not hold the requester's key; it was refused/],
    ['returning a certificate from another root', 'foreign-root', 502, 'EXTERNAL_CA_ERROR', /does not chain to the cluster root/],
  ] as const)(
    "a CA %s fails the join with %s and writes nothing; the joining node is not told the CA's address or words, the log is",
    async (_name, mode, status, code, message) => {
      first.mode = mode;
      const before = await count();
      const error = await failure(join());
      expect(error.statusCode).toBe(status);
      expect(error.code).toBe(code);
      expect(error.message).toMatch(/^the cluster's external CA (could not be reached|refused to sign; the managers' logs say why)$/);
      expect(lastCaFailure()).toMatch(message);
      expect(lastCaFailure()).toContain(first.url);
      expect(await count()).toEqual(before);
    },
  );

  it('logs refused certificates', async () => {
    first.mode = 'wrong-subject';
    await failure(join());
    expect(logger.records.some((r) => r.level === 'error' && r.message === 'external CA returned a certificate that was refused')).toBe(true);
  });

  it('gives a slow CA 5 seconds, then answers 503', async () => {
    // The signer on its own, with its 5 s timeout shortened to 200 ms.
    first.mode = 'slow';
    const signer = new CfsslSigner([{ url: first.url }], root.certPem, { logger, timeoutMs: 200 });
    const { csr } = freshCsr();
    const error = await failure(signer.issue({ csrPem: csr, csr: parseCsr(csr), role: 'worker', commonName: 'n', clusterId: 'c', hosts: [], validityMs: 1 }));
    expect(error).toMatchObject({ code: 'EXTERNAL_CA_UNAVAILABLE', statusCode: 503 });
    expect(error.message).toMatch(/did not answer within 0\.2 s/);
    await signer.close();
  });

  it("uses a URL with a path as given (as SwarmKit does), and gives a bare origin cfssl's path", () => {
    expect(signEndpoint({ url: 'https://ca:8888' })).toBe('https://ca:8888/api/v1/cfssl/sign');
    expect(signEndpoint({ url: 'https://ca:8888/', authKeyHex: 'aa' })).toBe('https://ca:8888/api/v1/cfssl/authsign');
    expect(signEndpoint({ url: 'https://ca:8888/api/v1/cfssl/sign' })).toBe('https://ca:8888/api/v1/cfssl/sign');
    expect(signEndpoint({ url: 'https://ca:8888/custom/sign', authKeyHex: 'aa' })).toBe('https://ca:8888/custom/sign');
  });

  it('tries several CAs in order, and update switches the list on the running manager', async () => {
    await cluster.settings.updateCluster({ externalCAs: [{ url: first.url }, { url: second.url }] });
    first.mode = 'down';
    const before = second.requests.length;
    await join();
    expect(second.requests.length).toBe(before + 1);
    await cluster.settings.updateCluster({ externalCAs: [{ url: second.url }] });
    expect((await cluster.store.get(KEYS.ca))?.value.external).toEqual([{ url: second.url }]);
    const firstBefore = first.requests.length;
    first.mode = 'ok';
    await join();
    expect(first.requests.length).toBe(firstBefore);
  });

  it('asks the CA once per join and renewal however often the store transaction runs again, and signs again (three times at most) only when the settings changed under its signature', async () => {
    const store = contendedStore(await memoryStore());
    const contended = await foundTestCluster({ store, certExpiryMs: HOUR, root: { certPem: root.certPem }, externalCAs: [{ url: first.url }] });
    try {
      const asked = first.requests.length;
      // Another manager writes the tokens record before each of three commits: the join's transaction runs four times.
      store.contend(KEYS.tokens, 3);
      const joined = await contended.caServer.join({ token: contended.settings.joinTokens().worker, csr: freshCsr().csr }, 'src-contended');
      expect(store.conflicts).toBe(3);
      expect(first.requests.length).toBe(asked + 1);
      const cert = new X509Certificate(joined.certificate);
      expect((await store.get(KEYS.nodes.ref(joined.nodeId)))?.value.certSerial).toBe(cert.serialNumber);
      // A renewal whose node record another writer touches (a last-seen flush) three times.
      store.contend(KEYS.nodes.ref(joined.nodeId), 3);
      const renewed = await contended.caServer.renew(await contended.authoriser.authorize(cert, ['manager', 'worker']), { csr: freshCsr().csr });
      expect(store.conflicts).toBe(6);
      expect(first.requests.length).toBe(asked + 2);
      expect((await store.get(KEYS.nodes.ref(joined.nodeId)))?.value.certSerial).toBe(new X509Certificate(renewed.certificate).serialNumber);
      // The expiry changes between the signing and the commit: that certificate is never recorded; the join signs once more, under the new expiry.
      const nodes = (await store.list(KEYS.nodes)).length;
      store.contend(KEYS.cluster, 1, (cluster) => ({ ...cluster, certExpiryMs: 2 * HOUR }));
      const resigned = await contended.caServer.join({ token: contended.settings.joinTokens().worker, csr: freshCsr().csr }, 'src-contended');
      expect(first.requests.length).toBe(asked + 4);
      expect((await store.get(KEYS.nodes.ref(resigned.nodeId)))?.value.certSerial).toBe(new X509Certificate(resigned.certificate).serialNumber);
      expect((await store.list(KEYS.nodes)).length).toBe(nodes + 1);
      // Changed under every signing: three signings at most, then STORE_CONFLICT (which the node retries), nothing recorded.
      let expiry = 2 * HOUR;
      store.contend(KEYS.cluster, 3, (cluster) => {
        expiry += HOUR;
        return { ...cluster, certExpiryMs: expiry };
      });
      expect(await codeOf(contended.caServer.join({ token: contended.settings.joinTokens().worker, csr: freshCsr().csr }, 'src-contended'))).toBe(
        'STORE_CONFLICT',
      );
      expect(first.requests.length).toBe(asked + 7);
      expect((await store.list(KEYS.nodes)).length).toBe(nodes + 1);
    } finally {
      await contended.cleanup();
    }
  });

  it('speaks authsign with an HMAC over the exact request', async () => {
    await cluster.settings.updateCluster({ externalCAs: [{ url: authed.url, authKeyHex: '0f'.repeat(32) }] });
    await join();
    expect(authed.requests).toHaveLength(1);
    // The auth key is sealed in the store, never kept in clear.
    expect(JSON.stringify((await cluster.store.get(KEYS.ca))?.value)).not.toContain('0f'.repeat(32));
    await cluster.settings.updateCluster({ externalCAs: [{ url: authed.url, authKeyHex: 'ee'.repeat(32) }] });
    expect((await failure(join())).code).toBe('EXTERNAL_CA_ERROR');
    expect(lastCaFailure()).toMatch(/refused to sign: invalid token/);
  });
});
