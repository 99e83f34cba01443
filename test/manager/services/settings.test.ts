import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KEYS } from '../../../src/store/cluster-store.js';
import { codeOf } from '../../helpers/codes.js';
import { foundTestCluster, heldFeed, memoryStore, type TestCluster } from '../../helpers/service.js';
import { openToken } from '../../../src/manager/state/stored-tokens.js';

let t: TestCluster;
beforeEach(async () => {
  t = await foundTestCluster();
});
afterEach(async () => {
  await t.cleanup();
});

describe('settings', () => {
  it('refuses an expiry below 5 minutes and malformed ones, and keeps the old one', async () => {
    expect(await codeOf(t.settings.updateCluster({ certExpiry: '4m59s' }))).toBe('CERT_EXPIRY_TOO_SHORT');
    expect(await codeOf(t.settings.updateCluster({ certExpiry: 'soon' }))).toBe('DURATION_INVALID');
    expect(await codeOf(t.settings.updateCluster({}))).toBe('BODY_INVALID');
    expect((await t.settings.clusterView(false)).certExpiry).toBe('2160h');
  });

  it('refuses external CAs for a cluster that holds its own key', async () => {
    expect(await codeOf(t.settings.updateCluster({ externalCAs: [{ url: 'https://ca:8888' }] }))).toBe('BODY_INVALID');
  });

  it('shows tokens only when asked, and where the store lives', async () => {
    expect((await t.settings.clusterView(false)).joinTokens.worker.token).toBeUndefined();
    expect((await t.settings.clusterView(true)).joinTokens.worker.token).toBe(t.settings.joinTokens().worker);
    expect((await t.settings.clusterView(false)).store).toMatch(/^level/);
  });
});

describe('concurrent rotations', () => {
  it('worker and manager at once, and two of the same role: every rotation takes effect (100 rounds)', async () => {
    for (let round = 0; round < 100; round++) {
      const before = (await t.store.get(KEYS.tokens))!.value;
      await Promise.all([t.settings.rotateToken('worker'), t.settings.rotateToken('manager')]);
      const after = (await t.store.get(KEYS.tokens))!.value;
      const text = (value: typeof after, role: 'worker' | 'manager'): string => openToken(t.dataKey, role, value[role]);
      expect(text(after, 'worker')).not.toBe(text(before, 'worker'));
      expect(text(after, 'manager')).not.toBe(text(before, 'manager'));
      expect(t.settings.joinTokens()).toMatchObject({ worker: text(after, 'worker'), manager: text(after, 'manager') });
    }
  });

  it('on two managers of one store whose caches lag, both rotations land', async () => {
    const store = heldFeed(await memoryStore());
    const a = await foundTestCluster({ store });
    try {
      const before = (await store.get(KEYS.tokens))!.value;
      const first = await a.settings.rotateToken('worker');
      // The second rotation starts from a cache that has not seen the first one.
      store.release();
      const second = await a.settings.rotateToken('manager');
      const after = (await store.get(KEYS.tokens))!.value;
      const text = (value: typeof after, role: 'worker' | 'manager'): string => openToken(a.dataKey, role, value[role]);
      expect(text(after, 'worker')).toBe(first.worker);
      expect(text(after, 'manager')).toBe(second.manager);
      expect(text(after, 'worker')).not.toBe(text(before, 'worker'));
    } finally {
      await a.cleanup();
    }
  });

  it('a rotation and an expiry change at once both land', async () => {
    const before = t.settings.joinTokens().worker;
    await Promise.all([t.settings.rotateToken('worker'), t.settings.updateCluster({ certExpiry: '1h' })]);
    expect(t.settings.joinTokens().worker).not.toBe(before);
    expect((await t.store.get(KEYS.cluster))!.value.certExpiryMs).toBe(3_600_000);
  });
});
