/**
 * What a locked manager's /healthz says of its store (issue 26): it cannot
 * log in to etcd (its client key is sealed), so a member that accepts
 * connections counts as well; an embedded store must open and hold the
 * cluster. The end-to-end check of the embedded store is in
 * test/e2e/autolock.test.ts.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { dataDirLayout } from '../../src/config/paths.js';
import { lockedStoreCheck } from '../../src/node/locked-manager.js';
import { freePort, startEtcd } from '../helpers/etcd.js';
import { scratchDir } from '../helpers/openssl.js';
import { slow } from '../helpers/slowdown.js';

const scratch = scratchDir('muster-locked-');
afterAll(() => scratch.cleanup());

describe('lockedStoreCheck', () => {
  it('etcd: well while a member accepts connections, not once none does', { timeout: slow(60_000) }, async () => {
    const etcd = await startEtcd({ tls: true });
    const layout = dataDirLayout(scratch.path('e'));
    const nobody = `127.0.0.1:${await freePort()}`;
    const check = lockedStoreCheck({ kind: 'etcd', endpoints: [nobody, ...etcd.endpoints] }, layout);
    try {
      expect(await check.check()).toBe(true);
    } finally {
      await etcd.stop();
    }
    expect(await check.check()).toBe(false);
    expect(await lockedStoreCheck({ kind: 'etcd', endpoints: [nobody] }, layout).check()).toBe(false);
    await check.close();
  });

  it('embedded: not well when the store does not open; close is safe then', async () => {
    const check = lockedStoreCheck({ kind: 'level' }, dataDirLayout(scratch.path('empty')));
    expect(await check.check()).toBe(false);
    await check.close();
  });
});
