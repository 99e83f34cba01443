/**
 * A renewal on a kept-alive connection (issue 31): the manager lets the
 * renewed certificate speak for the connection it was issued on, so a node
 * keeps its one connection instead of a handshake per renewal. The binding
 * is that connection's alone: another connection keeps the certificate of
 * its handshake, which two renewals later the node record no longer names.
 */
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../../src/api/client.js';
import { buildApp, type MusterApp } from '../../../src/manager/http/app.js';
import { eventually } from '../../helpers/processes.js';
import { foundTestCluster, freshCsr, type TestCluster } from '../../helpers/service.js';

let t: TestCluster;
let app: MusterApp;
let address = '';
let handshakes = 0;
const open = new Set<TLSSocket>();

beforeAll(async () => {
  t = await foundTestCluster();
  app = await buildApp({ services: t.services, tls: t.managerTls, logger: pino({ level: 'silent' }) });
  app.server.prependListener('secureConnection', (socket: TLSSocket) => {
    handshakes += 1;
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  address = `127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  await t.membership.register(address);
});
afterAll(async () => {
  await app.close();
  await t.cleanup();
});

describe('a renewal on a kept-alive connection', () => {
  it('the renewed certificate speaks on the connection it was issued on, and only there', async () => {
    const rootPem = t.state.root.pem;
    const joining = freshCsr();
    const joiner = new ApiClient({ managers: [address], tls: { rootPem } });
    const joined = await joiner.call('join', { body: { token: t.settings.joinTokens().worker, csr: joining.csr } });
    await joiner.close();
    const first = { rootPem, certPem: joined.certificate, keyPem: joining.keyPem };

    // Another connection of the same node, opened with the first certificate and kept.
    const other = new ApiClient({ managers: [address], tls: first, connections: 1 });
    expect((await other.call('self')).renewNow).toBe(false);

    const session = new ApiClient({ managers: [address], tls: first, connections: 1, renewable: true });
    expect((await session.call('self')).renewNow).toBe(false);
    const before = handshakes;
    let held = first;
    for (let round = 0; round < 3; round++) {
      const next = freshCsr();
      const renewed = await session.call('renew', { body: { csr: next.csr } });
      expect(renewed.sameConnection).toBe(true);
      held = { rootPem, certPem: renewed.certificate, keyPem: next.keyPem };
      session.useIdentity(held.certPem, held.keyPem);
      // The node record names the new certificate; the connection speaks for it.
      expect((await session.call('self')).renewNow).toBe(false);
    }
    expect(handshakes - before).toBe(0);

    // The first certificate is three renewals old: refused on the connection it opened and on a new one.
    await expect(other.call('self')).rejects.toMatchObject({ code: 'CERT_UNTRUSTED' });
    const stale = new ApiClient({ managers: [address], tls: first });
    await expect(stale.call('self')).rejects.toMatchObject({ code: 'CERT_UNTRUSTED' });
    // The connections drop (a manager side restart, a network cut): the session's next one presents the renewed
    // certificate in its handshake (useIdentity reached the dispatcher's next connection).
    for (const socket of open) socket.destroy();
    // Until the client has seen its connection go, a request may still be sent on it and fail: the agent's next poll retries too.
    await eventually('the session to reconnect', async () => ((await session.call('self').catch(() => undefined))?.renewNow === false ? true : undefined));
    expect(handshakes - before).toBe(2); // the stale client's, and the session's new connection
    await Promise.all([other.close(), stale.close(), session.close()]);
  });
});
